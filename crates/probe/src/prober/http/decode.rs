//! Content codings (`Content-Encoding`) decoded before a body match, bounded
//! by how many decoded bytes the caller still has room for: a few KiB of gzip
//! that inflate to gigabytes stop at the cap, never in memory.

use std::io::{self, Write};

/// Decodes one body as its frames arrive.
pub(super) struct Decoder(Inner);

enum Inner {
    Identity { capped: bool },
    Gzip(flate2::write::GzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Sink>>),
}

/// Where decoded bytes land; refuses any past `room`.
#[derive(Default)]
struct Sink {
    out: Vec<u8>,
    room: usize,
    /// More decoded output than there was room for.
    full: bool,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.room);
        if n < buf.len() {
            self.full = true;
        }
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::other(FULL));
        }
        self.out.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const FULL: &str = "decoded body reached the read limit";

impl Decoder {
    pub(super) fn identity() -> Decoder {
        Decoder(Inner::Identity { capped: false })
    }

    /// The decoder for a `Content-Encoding` value; `Err` names a coding it
    /// cannot decode. Stacked codings (`gzip, br`) are refused the same way.
    pub(super) fn new(value: &[u8]) -> Result<Decoder, String> {
        let coding = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
        Ok(Decoder(match coding.as_str() {
            "" | "identity" => Inner::Identity { capped: false },
            "gzip" | "x-gzip" => Inner::Gzip(flate2::write::GzDecoder::new(Sink::default())),
            "deflate" => Inner::Zlib(flate2::write::ZlibDecoder::new(Sink::default())),
            "br" => Inner::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(Sink::default(), 8192))),
            _ => return Err(coding),
        }))
    }

    /// Decodes `data`, returning at most `room` decoded bytes.
    pub(super) fn feed(&mut self, data: &[u8], room: usize) -> Result<Vec<u8>, String> {
        let written = match &mut self.0 {
            Inner::Identity { capped } => {
                *capped |= data.len() > room;
                return Ok(data[..data.len().min(room)].to_vec());
            }
            Inner::Gzip(d) => {
                d.get_mut().room = room;
                d.write_all(data).and_then(|()| d.flush())
            }
            Inner::Zlib(d) => {
                d.get_mut().room = room;
                d.write_all(data).and_then(|()| d.flush())
            }
            Inner::Brotli(d) => {
                d.get_mut().room = room;
                d.write_all(data).and_then(|()| d.flush())
            }
        };
        self.output(written)
    }

    /// What is left once the body ends.
    pub(super) fn finish(&mut self, room: usize) -> Result<Vec<u8>, String> {
        let written = match &mut self.0 {
            Inner::Identity { .. } => return Ok(Vec::new()),
            Inner::Gzip(d) => {
                d.get_mut().room = room;
                d.try_finish()
            }
            Inner::Zlib(d) => {
                d.get_mut().room = room;
                d.try_finish()
            }
            Inner::Brotli(d) => {
                d.get_mut().room = room;
                d.close().map_err(|e| io::Error::other(format!("{e:?}")))
            }
        };
        self.output(written)
    }

    /// The decoded bytes of the last write; the sink refusing bytes is the
    /// cap, not a decoding error.
    fn output(&mut self, written: io::Result<()>) -> Result<Vec<u8>, String> {
        match written {
            Err(e) if !self.is_capped() => Err(format!("cannot decode the body: {e}")),
            _ => Ok(self.take()),
        }
    }

    /// Decoded output did not fit in the room given.
    pub(super) fn is_capped(&self) -> bool {
        match &self.0 {
            Inner::Identity { capped } => *capped,
            Inner::Gzip(d) => d.get_ref().full,
            Inner::Zlib(d) => d.get_ref().full,
            Inner::Brotli(d) => d.get_ref().full,
        }
    }

    fn take(&mut self) -> Vec<u8> {
        match &mut self.0 {
            Inner::Identity { .. } => Vec::new(),
            Inner::Gzip(d) => std::mem::take(&mut d.get_mut().out),
            Inner::Zlib(d) => std::mem::take(&mut d.get_mut().out),
            Inner::Brotli(d) => std::mem::take(&mut d.get_mut().out),
        }
    }
}
