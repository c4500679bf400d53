use std::path::PathBuf;

use crate::codec::CodecError;

/// Errors opening or reading the stores. Raft storage calls map these into
/// openraft's `StorageError` at the trait boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The advice depends on the cause: a file locked by a running process
    /// must not be "restored" or replaced.
    #[error("cannot open {path}: {}", open_advice(source))]
    Open { path: PathBuf, source: redb::DatabaseError },
    #[error("cannot open {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("storage: {source}")]
    Storage {
        #[from]
        source: redb::Error,
    },
    #[error("stored value unreadable: {source}")]
    Codec {
        #[from]
        source: CodecError,
    },
    #[error("storage task failed: {message}")]
    Task { message: String },
    #[error("this node is installing a snapshot; retry in a moment, or ask another node")]
    Installing,
    #[error("snapshot file {path}: {source}")]
    SnapshotFile { path: PathBuf, source: std::io::Error },
}

fn open_advice(source: &redb::DatabaseError) -> String {
    match source {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            "another process holds it (is another uptime-node running on this \
             data directory?); stop that process, or give this one its own data directory"
                .to_string()
        }
        other => format!("{other} (is the file truncated or corrupt? restore it from a snapshot or replace the node)"),
    }
}

/// Lifts any redb error into [`Error`]; redb has one error type per operation.
pub(crate) fn db<E: Into<redb::Error>>(e: E) -> Error {
    Error::Storage { source: e.into() }
}
