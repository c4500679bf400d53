//! Reading a received message back: headers unfolded, RFC 2047 words and
//! the body's transfer encoding decoded, so tests compare with what was rendered.

use base64::Engine as _;

pub struct Mail {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Mail {
    pub fn parse(data: &str) -> Mail {
        let (head, body) = data.split_once("\r\n\r\n").expect("headers, a blank line, a body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().expect("a continuation follows a header");
                last.1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').expect("name: value");
                headers.push((name.to_string(), value.trim_start().to_string()));
            }
        }
        let mut mail = Mail { headers, body: String::new() };
        let encoding = mail.header("Content-Transfer-Encoding").unwrap_or("7bit").to_ascii_lowercase();
        mail.body = match encoding.as_str() {
            "base64" => {
                let compact: String = body.split_whitespace().collect();
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).unwrap()).unwrap()
            }
            "quoted-printable" => quoted_printable(body),
            _ => body.to_string(),
        };
        mail
    }

    /// The raw (still encoded) value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A header's value with RFC 2047 encoded words decoded.
    pub fn decoded(&self, name: &str) -> Option<String> {
        self.header(name).map(decode_words)
    }

    /// The body with CRLF line ends turned into `\n` and the final line end dropped.
    pub fn text(&self) -> String {
        self.body.replace("\r\n", "\n").trim_end_matches('\n').to_string()
    }
}

fn quoted_printable(s: &str) -> String {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words; whitespace between two
/// encoded words is dropped, as RFC 2047 says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut previous_encoded = false;
    for (i, token) in value.split(' ').enumerate() {
        let decoded = token.strip_prefix("=?").and_then(|t| t.strip_suffix("?=")).and_then(|t| {
            let mut parts = t.splitn(3, '?');
            let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
            let raw = match encoding {
                "b" | "B" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
                "q" | "Q" => quoted_printable(&text.replace('_', " ")).into_bytes(),
                _ => return None,
            };
            String::from_utf8(raw).ok()
        });
        match decoded {
            Some(d) => {
                if i > 0 && !previous_encoded {
                    out.push(' ');
                }
                out.push_str(&d);
                previous_encoded = true;
            }
            None => {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(token);
                previous_encoded = false;
            }
        }
    }
    out
}
