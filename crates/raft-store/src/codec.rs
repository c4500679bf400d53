//! The one place values are turned into bytes for the log, the state machine,
//! snapshots and peer RPC payloads.
//!
//! Every encoding starts with a format-version byte. Version 1 is bincode 2 (serde
//! mode, standard config). A later version can change the body format; decoders keep
//! reading every version they have ever written, so a rolling upgrade can read what
//! an older node wrote. Types encoded here avoid serde features bincode cannot read
//! (internally tagged or untagged enums, flatten, skipped fields).

use serde::de::DeserializeOwned;
use serde::Serialize;

const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value: no format-version byte")]
    Empty,
    #[error("unknown format version {version}: written by a newer release?")]
    UnknownVersion { version: u8 },
    #[error("cannot decode value: {source}")]
    Decode {
        #[from]
        source: bincode::error::DecodeError,
    },
    #[error("cannot encode value: {source}")]
    Encode {
        #[from]
        source: bincode::error::EncodeError,
    },
    #[error("{trailing} trailing bytes after the value")]
    Trailing { trailing: usize },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut out, config())?;
    Ok(out)
}

/// The length [`encode`] would give `value`, without keeping the bytes.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, CodecError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(1);
    bincode::serde::encode_into_std_write(value, &mut count, config())?;
    Ok(count.0)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        FORMAT_V1 => {
            let (value, read) = bincode::serde::decode_from_slice(body, config())?;
            if read != body.len() {
                return Err(CodecError::Trailing { trailing: body.len() - read });
            }
            Ok(value)
        }
        version => Err(CodecError::UnknownVersion { version }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_versions_and_garbage() {
        let mut bytes = encode(&(7u64, "x".to_string())).unwrap();
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), (7, "x".to_string()));
        bytes[0] = 9;
        assert!(matches!(decode::<(u64, String)>(&bytes), Err(CodecError::UnknownVersion { version: 9 })));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(decode::<(u64, String)>(&[FORMAT_V1, 0xff, 0xff]).is_err());
        let mut long = encode(&1u8).unwrap();
        long.push(0);
        assert!(matches!(decode::<u8>(&long), Err(CodecError::Trailing { trailing: 1 })));
    }
}
