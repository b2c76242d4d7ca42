//! Settings from the environment (API.md, "Settings").

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Clone, Debug)]
pub struct Settings {
    /// `LW_LISTEN`, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `LW_DATABASE_URL`: PostgreSQL; unset = the embedded store.
    pub database_url: Option<String>,
    /// `LW_DATA_DIR`, default `./data`.
    pub data_dir: PathBuf,
    /// `LW_MASTER_KEY`: 32 bytes, base64. Embedded mode generates one into the data dir.
    pub master_key: Option<String>,
}

impl Settings {
    pub fn from_env() -> anyhow::Result<Self> {
        let listen = std::env::var("LW_LISTEN")
            .unwrap_or_else(|_| "127.0.0.1:8080".into())
            .parse()
            .map_err(|e| anyhow::anyhow!("LW_LISTEN is not an address like 127.0.0.1:8080: {e}"))?;
        Ok(Settings {
            listen,
            database_url: std::env::var("LW_DATABASE_URL")
                .ok()
                .filter(|s| !s.is_empty()),
            data_dir: std::env::var("LW_DATA_DIR")
                .unwrap_or_else(|_| "./data".into())
                .into(),
            master_key: std::env::var("LW_MASTER_KEY")
                .ok()
                .filter(|s| !s.is_empty()),
        })
    }
}
