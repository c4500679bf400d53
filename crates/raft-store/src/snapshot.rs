//! The snapshot file: the domain state streamed to disk, table by table, row by
//! row, so that a snapshot of any size is built, sent, received and installed
//! without holding it in memory.
//!
//! Layout:
//!
//! ```text
//! magic "UCSNAP01" | u32 meta length | meta (codec) | record* | end
//! record = 0x01 u8 name length, table name          (a table starts)
//!        | 0x02 u32 key length, u32 value length, key, value   (a row)
//! end    = 0x00, SHA-256 of every record byte before it
//! ```
//!
//! Integers are big-endian. Tables come in [`TABLES`] order and rows in key
//! order, so equal states give equal records; the hash over the records is also
//! the state hash a node reports, and it makes a truncated or damaged file
//! detectable before it replaces anything.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use redb::{ReadTransaction, ReadableTable, TableHandle};
use sha2::{Digest, Sha256};

use crate::codec;
use crate::error::{db, Error};
use crate::tables::{Table, TABLES};
use crate::typ::SnapshotMeta;

const MAGIC: &[u8; 8] = b"UCSNAP01";
const TAG_END: u8 = 0;
const TAG_TABLE: u8 = 1;
const TAG_ROW: u8 = 2;
/// No stored key or value comes near this; a larger length means a damaged file.
const MAX_FIELD: u32 = 64 << 20;
/// Write and read buffer size.
const BUFFER: usize = 1 << 20;

/// Snapshot data as openraft handles it: an open file and its path, so install
/// can move a received file into place instead of copying it.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
    /// A file being received is removed when openraft drops it without
    /// installing it (an abandoned or superseded transfer), so transfers cut
    /// short by leader changes cannot fill the disk.
    temporary: bool,
}

impl SnapshotFile {
    pub(crate) fn new(file: File, path: PathBuf) -> SnapshotFile {
        SnapshotFile { file: tokio::fs::File::from_std(file), path, temporary: false }
    }

    /// A file being received: removed on drop unless [`SnapshotFile::keep`] is called.
    pub(crate) fn temporary(file: File, path: PathBuf) -> SnapshotFile {
        SnapshotFile { file: tokio::fs::File::from_std(file), path, temporary: true }
    }

    /// Closes the file and hands its path over to the caller, who now owns it.
    pub(crate) fn keep(mut self) -> PathBuf {
        self.temporary = false;
        std::mem::take(&mut self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes buffered by tokio reach the file, and the file reaches the disk.
    pub(crate) async fn sync(&mut self) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.sync_all().await
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.temporary {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remove an abandoned snapshot transfer");
                }
            }
        }
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

/// Hashes what passes through to the inner writer.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Streams every domain table of `txn` as records into `out` and returns the
/// SHA-256 of those records: the state hash. Writes no end record.
pub(crate) fn write_records<W: Write>(txn: &ReadTransaction, out: W) -> Result<([u8; 32], W), Error> {
    let mut w = Hashing { inner: out, hasher: Sha256::new() };
    let io = |e: io::Error| Error::Task { message: format!("writing snapshot records: {e}") };
    for def in TABLES {
        let name = def.name().as_bytes();
        w.write_all(&[TAG_TABLE, name.len() as u8]).map_err(io)?;
        w.write_all(name).map_err(io)?;
        let table = txn.open_table(def).map_err(db)?;
        for row in table.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let (k, v) = (k.value(), v.value());
            if k.len() > MAX_FIELD as usize || v.len() > MAX_FIELD as usize {
                // What the reader would refuse is refused here, with its name,
                // rather than sent to every follower as an unreadable snapshot.
                return Err(Error::Task {
                    message: format!(
                        "a row of table {} is {} bytes, over the snapshot limit of {MAX_FIELD}",
                        def.name(),
                        k.len() + v.len()
                    ),
                });
            }
            w.write_all(&[TAG_ROW]).map_err(io)?;
            w.write_all(&(k.len() as u32).to_be_bytes()).map_err(io)?;
            w.write_all(&(v.len() as u32).to_be_bytes()).map_err(io)?;
            w.write_all(k).map_err(io)?;
            w.write_all(v).map_err(io)?;
        }
    }
    Ok((w.hasher.finalize().into(), w.inner))
}

/// Writes a whole snapshot of `txn` to `file` (header, records, end) and syncs
/// it. Returns the state hash it ends with.
pub(crate) fn write_file(
    txn: &ReadTransaction,
    meta: &SnapshotMeta,
    file: &File,
    path: &Path,
) -> Result<[u8; 32], Error> {
    let io = |source| Error::SnapshotFile { path: path.to_owned(), source };
    let mut out = BufWriter::with_capacity(BUFFER, file);
    let meta = codec::encode(meta)?;
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&(meta.len() as u32).to_be_bytes()).map_err(io)?;
    out.write_all(&meta).map_err(io)?;
    let (hash, mut out) = write_records(txn, out)?;
    out.write_all(&[TAG_END]).map_err(io)?;
    out.write_all(&hash).map_err(io)?;
    out.flush().map_err(io)?;
    drop(out);
    file.sync_all().map_err(io)?;
    Ok(hash)
}

/// One record of a snapshot file.
pub(crate) enum Record<'a> {
    Table(Table),
    Row(&'a [u8], &'a [u8]),
    /// The end; the records' hash matched.
    End,
}

/// Reads a snapshot file record by record, hashing as it goes.
pub(crate) struct Reader {
    input: BufReader<File>,
    path: PathBuf,
    hasher: Sha256,
    key: Vec<u8>,
    value: Vec<u8>,
    ended: bool,
}

impl Reader {
    /// Opens `path` and reads its header.
    pub(crate) fn open(path: &Path) -> Result<(Reader, SnapshotMeta), Error> {
        let file = File::open(path).map_err(|source| Error::SnapshotFile { path: path.to_owned(), source })?;
        let mut reader = Reader {
            input: BufReader::with_capacity(BUFFER, file),
            path: path.to_owned(),
            hasher: Sha256::new(),
            key: Vec::new(),
            value: Vec::new(),
            ended: false,
        };
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(reader.corrupt("not a snapshot file (bad magic)"));
        }
        let len = reader.read_u32()?;
        if len > MAX_FIELD {
            return Err(reader.corrupt("snapshot header too long"));
        }
        let mut meta = vec![0u8; len as usize];
        reader.read_exact(&mut meta)?;
        let meta = codec::decode(&meta).map_err(|e| reader.corrupt(&format!("snapshot header: {e}")))?;
        Ok((reader, meta))
    }

    /// Reads just the header of `path`.
    pub(crate) fn meta(path: &Path) -> Result<SnapshotMeta, Error> {
        Ok(Reader::open(path)?.1)
    }

    /// Reads the whole file and checks its structure and hash.
    pub(crate) fn verify(path: &Path) -> Result<SnapshotMeta, Error> {
        let (mut reader, meta) = Reader::open(path)?;
        while !matches!(reader.next()?, Record::End) {}
        Ok(meta)
    }

    pub(crate) fn next(&mut self) -> Result<Record<'_>, Error> {
        if self.ended {
            return Err(self.corrupt("read past the end record"));
        }
        let mut tag = [0u8; 1];
        self.read_exact(&mut tag)?;
        match tag[0] {
            TAG_END => {
                let expected: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
                let mut stored = [0u8; 32];
                self.read_exact(&mut stored)?;
                if stored != expected {
                    return Err(self.corrupt("checksum mismatch"));
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest).map_err(|e| self.io(e))? != 0 {
                    return Err(self.corrupt("bytes after the end record"));
                }
                self.ended = true;
                Ok(Record::End)
            }
            TAG_TABLE => {
                self.hasher.update(tag);
                let mut len = [0u8; 1];
                self.read_hashed(&mut len)?;
                let mut name = vec![0u8; len[0] as usize];
                self.read_hashed(&mut name)?;
                match TABLES.iter().find(|t| t.name().as_bytes() == name.as_slice()) {
                    Some(def) => Ok(Record::Table(*def)),
                    None => Err(self.corrupt(&format!("unknown table {:?}", String::from_utf8_lossy(&name)))),
                }
            }
            TAG_ROW => {
                self.hasher.update(tag);
                let mut lens = [0u8; 8];
                self.read_hashed(&mut lens)?;
                let klen = u32::from_be_bytes(lens[..4].try_into().expect("4 bytes"));
                let vlen = u32::from_be_bytes(lens[4..].try_into().expect("4 bytes"));
                if klen > MAX_FIELD || vlen > MAX_FIELD {
                    return Err(self.corrupt("row length out of range"));
                }
                let mut key = std::mem::take(&mut self.key);
                let mut value = std::mem::take(&mut self.value);
                key.resize(klen as usize, 0);
                value.resize(vlen as usize, 0);
                let read = self.read_hashed(&mut key).and_then(|()| self.read_hashed(&mut value));
                self.key = key;
                self.value = value;
                read?;
                Ok(Record::Row(&self.key, &self.value))
            }
            other => Err(self.corrupt(&format!("unknown record tag {other}"))),
        }
    }

    fn read_u32(&mut self) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn read_hashed(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.read_exact(buf)?;
        self.hasher.update(&*buf);
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => self.corrupt("truncated"),
            _ => self.io(e),
        })
    }

    fn io(&self, source: io::Error) -> Error {
        Error::SnapshotFile { path: self.path.clone(), source }
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::Corrupt { path: self.path.clone(), reason: reason.to_owned() }
    }
}

/// Lowercase hex of a hash.
pub(crate) fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;

    /// Issue 9, defect 9: the writer accepted rows the reader refuses, so one
    /// large row made every snapshot after it unreadable on the receiving end.
    #[test]
    fn the_writer_refuses_a_row_the_reader_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("s.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        for t in TABLES {
            txn.open_table(t).unwrap();
        }
        let big = vec![7u8; MAX_FIELD as usize + 1];
        txn.open_table(TABLES[0]).unwrap().insert(b"k".as_slice(), big.as_slice()).unwrap();
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let path = dir.path().join("snap");
        let file = File::create(&path).unwrap();
        let meta = SnapshotMeta::default();
        let err = write_file(&read, &meta, &file, &path).expect_err("an unreadable snapshot was written");
        assert!(err.to_string().contains("row"), "{err}");
    }
}
