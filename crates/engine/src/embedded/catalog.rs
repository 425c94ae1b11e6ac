//! The queue catalog: `queues.json` in the data directory, rewritten atomically (write a temp
//! file, fsync it, rename it over the old one, fsync the directory) on every queue change.
//! Queue changes are rare, so a small JSON file is simpler than putting them in the log, and it
//! lets the log's segments be deleted without losing queue definitions.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::QueueInfo;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Catalog {
    pub next_queue_id: u32,
    pub queues: Vec<CatalogQueue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogQueue {
    pub id: u32,
    #[serde(flatten)]
    pub info: QueueInfo,
}

const FILE: &str = "queues.json";

pub fn load(dir: &Path) -> Result<Catalog> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            crate::EngineError::Storage(format!("{} is not a valid catalog: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Catalog {
            next_queue_id: 1,
            queues: Vec::new(),
        }),
        Err(e) => Err(e.into()),
    }
}

pub fn save(dir: &Path, catalog: &Catalog) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(catalog).expect("catalog serializes");
    super::side::write_atomic(dir, FILE, &bytes)
}
