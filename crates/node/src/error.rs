use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("config: {message}")]
    Config { message: String },
    #[error("cannot read {path}: {source}")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] uptime_raft_store::Error),
    #[error(
        "{log} is missing but {state} exists: starting a fresh log would forget this node's vote, and it could \
         vote twice in a term; restore the file, or remove the node from the cluster, delete its data directory and add it back"
    )]
    MissingLog { log: PathBuf, state: PathBuf },
    #[error("raft: {context}: {source}")]
    Raft {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("certificate: {message}")]
    Cert { message: String },
    #[error("{context}: {source}")]
    Build {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{task} stopped: {reason}")]
    Stopped { task: &'static str, reason: String },
}

impl Error {
    pub(crate) fn raft(context: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Raft { context, source: Box::new(source) }
    }

    pub(crate) fn build(context: &'static str, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Build { context, source: Box::new(source) }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config { message: message.into() }
    }
}
