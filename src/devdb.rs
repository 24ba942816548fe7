//! TEMPORARY compile stub; replaced by the devdb branch.
use std::path::PathBuf;
pub struct DevDbOptions {
    pub data_dir: Option<PathBuf>,
    pub durable: bool,
    pub install_if_missing: bool,
}
pub struct DevDb;
impl DevDb {
    pub fn start(_: DevDbOptions) -> anyhow::Result<DevDb> {
        anyhow::bail!("stub")
    }
    pub fn url(&self) -> String {
        String::new()
    }
    pub fn url_for(&self, _: &str) -> String {
        String::new()
    }
    pub fn stop(self) -> anyhow::Result<()> {
        Ok(())
    }
}
