//! The open-file limit. Every check holds a socket (two for a DNS check that
//! falls back to TCP), so the node's concurrency is bounded by it; a node that
//! runs out reports "could not check", not DOWN (see [`crate::LocalCause`]).

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft
/// limit (`u64::MAX` for unlimited). The node calls it at start and sizes its
/// in-flight cap from the result. Unprivileged, since the hard limit is the
/// ceiling any process may raise itself to.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit still cannot be set as the soft one: Linux caps
    // open files at `fs.nr_open`.
    let target = limit.maximum.or_else(nr_open);
    if target.is_some() && limit.current != target {
        setrlimit(Resource::Nofile, Rlimit { current: target, maximum: limit.maximum })?;
    }
    Ok(getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX))
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open").ok()?.trim().parse().ok()
}

/// The soft `RLIMIT_NOFILE` as it stands (`u64::MAX` for unlimited), for
/// sizing the in-flight cap when raising it failed.
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
