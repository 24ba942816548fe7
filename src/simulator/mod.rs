//! stub
pub mod cli {
    #[derive(clap::Args, Debug)]
    pub struct SimArgs {}
    pub async fn run_standalone(_: SimArgs) -> anyhow::Result<()> { anyhow::bail!("todo") }
}
#[derive(Default)]
pub struct SimConfig { pub api_key: Option<secrecy::SecretString>, pub queue_delay: std::time::Duration, pub run_delay: std::time::Duration }
pub struct SimHandle;
impl SimHandle { pub fn base_url(&self) -> String { String::new() } pub fn jwks_url(&self) -> String { String::new() } pub async fn stop(self) {} }
pub async fn start(_: SimConfig) -> anyhow::Result<SimHandle> { anyhow::bail!("stub") }
