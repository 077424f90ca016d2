//! Storage backends of the native server, each an implementation of the
//! core's storage port, and the choice between them.

use std::sync::Arc;

use pier_core::store::Store;

use settings::{StorageConfig, StorageLocation};

pub mod fs;
pub mod metered;
pub mod object;
pub mod settings;

/// Opens the store the configuration names: the local disk (the default) or a
/// bucket shared with other instances.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Store>, String> {
    match &config.location {
        StorageLocation::Disk(dir) => fs::FsStore::open(dir, config.part_size)
            .map(|store| match config.fsync {
                true => store,
                false => store.without_fsync(),
            })
            .map(|store| Arc::new(store) as Arc<dyn Store>)
            .map_err(|e| format!("data directory {}: {e}", dir.display())),
        StorageLocation::Bucket(url) => {
            object::BucketStore::open(url, &config.s3, config.part_size).map(|store| Arc::new(store) as Arc<dyn Store>)
        }
    }
}
