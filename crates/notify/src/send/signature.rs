//! HMAC-SHA256 webhook signatures (the scheme is in the `send` module docs).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Uptime-Signature";
/// The header that carries the signed unix timestamp.
pub const TIMESTAMP_HEADER: &str = "X-Uptime-Timestamp";

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Uptime-Signature` value for a body sent at `timestamp`.
pub(crate) fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `header_value` (`sha256=<hex>`) signs `timestamp` and `body` with
/// `secret`, compared in constant time. The caller still judges the
/// timestamp's age.
pub fn verify_signature(secret: &str, timestamp: &str, body: &[u8], header_value: &str) -> bool {
    let Some(hex) = header_value.trim().strip_prefix("sha256=") else { return false };
    let Some(expected) = decode_hex(hex) else { return false };
    mac(secret, timestamp, body).verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_input_does_not() {
        let sig = sign("k", "1700000000", b"{}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify_signature("k", "1700000000", b"{}", &sig));
        assert!(!verify_signature("other", "1700000000", b"{}", &sig));
        assert!(!verify_signature("k", "1700000001", b"{}", &sig));
        assert!(!verify_signature("k", "1700000000", b"{ }", &sig));
        assert!(!verify_signature("k", "1700000000", b"{}", "sha256=zz"));
        assert!(!verify_signature("k", "1700000000", b"{}", &sig[7..]));
    }

    /// The signed string is `<timestamp>.<body>`, exactly, under a standard HMAC.
    #[test]
    fn signs_timestamp_dot_body() {
        // RFC 4231, test case 2.
        let rfc = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(sign("Jefe", "what do ya want for nothing?", b"").len(), 71);
        let mut direct = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        direct.update(b"what do ya want for nothing?");
        assert!(direct.verify_slice(&decode_hex(rfc).unwrap()).is_ok());
        let ours = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap().chain_update(b"12.body").finalize().into_bytes();
        let hex: String = ours.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(sign("Jefe", "12", b"body"), format!("sha256={hex}"));
    }
}
