//! openraft's storage conformance suite against both stores: RocksDB and memory.

use std::sync::Arc;

use coffer_model::app::SecretsModel;
use coffer_raft::log_store::LogStore;
use coffer_raft::mem::MemLogBackend;
use coffer_raft::mem::MemSmBackend;
use coffer_raft::state_machine::StateMachineStore;
use coffer_raft::TypeConfig;
use openraft::testing::log::StoreBuilder;
use openraft::testing::log::Suite;
use openraft::StorageError;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = coffer_raft::rocks::open(dir.path()).expect("open rocksdb");
        let sm = StateMachineStore::new(Arc::new(sm), Arc::new(SecretsModel)).expect("state machine");
        Ok((dir, LogStore::new(Arc::new(log)), sm))
    }
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let sm = StateMachineStore::new(Arc::new(MemSmBackend::new()), Arc::new(SecretsModel)).expect("state machine");
        Ok(((), LogStore::new(Arc::new(MemLogBackend::new())), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocksdb_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(RocksBuilder).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_openraft_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(MemBuilder).await
}
