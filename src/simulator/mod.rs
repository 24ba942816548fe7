//! stub
pub mod cli {
    #[derive(clap::Args, Debug)]
    pub struct SimArgs {}
    pub async fn run_standalone(_: SimArgs) -> anyhow::Result<()> { anyhow::bail!("todo") }
}
