//! A small SMTP server: EHLO, STARTTLS, AUTH PLAIN and LOGIN, MAIL, RCPT,
//! DATA, RSET, NOOP, QUIT. Enough of RFC 5321 for lettre to hold a real
//! conversation with it, and no more.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::AbortOnDrop;

#[derive(Clone)]
pub struct SmtpConfig {
    /// Advertise and accept STARTTLS with this configuration.
    pub starttls: Option<Arc<rustls::ServerConfig>>,
    /// TLS from the first byte (SMTPS) with this configuration.
    pub implicit_tls: Option<Arc<rustls::ServerConfig>>,
    /// Require AUTH with these credentials, offering these mechanisms.
    pub auth: Option<(String, String)>,
    pub mechanisms: Vec<&'static str>,
}

impl SmtpConfig {
    pub fn plain() -> SmtpConfig {
        SmtpConfig { starttls: None, implicit_tls: None, auth: None, mechanisms: vec!["PLAIN", "LOGIN"] }
    }
}

/// One message the server accepted.
#[derive(Clone, Debug)]
pub struct Received {
    /// Whether the transaction ran over TLS.
    pub tls: bool,
    /// `(mechanism, username)` of a successful AUTH.
    pub auth: Option<(String, String)>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-stuffing undone, without the final `.`.
    pub data: String,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Every command line, AUTH payloads elided, across connections.
    commands: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop,
}

impl SmtpServer {
    pub async fn start(config: SmtpConfig) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared { config: Arc::new(config), received: received.clone(), commands: commands.clone() };
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                tokio::spawn(connection(tcp, shared.clone()));
            }
        });
        SmtpServer { addr, received, commands, _task: AbortOnDrop(task) }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().unwrap().clone()
    }
}

#[derive(Clone)]
struct Shared {
    config: Arc<SmtpConfig>,
    received: Arc<Mutex<Vec<Received>>>,
    commands: Arc<Mutex<Vec<String>>>,
}

/// How a conversation on one stream ended.
enum End {
    Closed,
    /// The client asked for STARTTLS and was told to go ahead.
    StartTls,
}

async fn connection(tcp: TcpStream, shared: Shared) {
    if let Some(tls) = shared.config.implicit_tls.clone() {
        let Ok(stream) = TlsAcceptor::from(tls).accept(tcp).await else { return };
        let _ = converse(BufReader::new(stream), &shared, true, true).await;
        return;
    }
    let mut reader = BufReader::new(tcp);
    match converse(&mut reader, &shared, false, true).await {
        Ok(End::StartTls) => {
            let tls = shared.config.starttls.clone().expect("STARTTLS is only accepted when configured");
            let Ok(stream) = TlsAcceptor::from(tls).accept(reader.into_inner()).await else { return };
            // RFC 3207: the session starts over, without a new greeting.
            let _ = converse(BufReader::new(stream), &shared, true, false).await;
        }
        Ok(End::Closed) | Err(_) => {}
    }
}

#[derive(Default)]
struct Transaction {
    auth: Option<(String, String)>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

async fn converse<S: AsyncBufRead + AsyncWrite + Unpin>(
    mut stream: S,
    shared: &Shared,
    tls: bool,
    greet: bool,
) -> std::io::Result<End> {
    let config = &shared.config;
    if greet {
        stream.write_all(b"220 test.invalid ESMTP ready\r\n").await?;
    }
    let mut tx = Transaction::default();
    loop {
        let Some(line) = read_line(&mut stream).await? else { return Ok(End::Closed) };
        let upper = line.to_ascii_uppercase();
        let logged = if upper.starts_with("AUTH") {
            line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        } else {
            line.clone()
        };
        shared.commands.lock().unwrap().push(logged);
        let verb = upper.split_whitespace().next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["test.invalid".to_string()];
                if config.starttls.is_some() && !tls {
                    lines.push("STARTTLS".into());
                }
                if config.auth.is_some() {
                    lines.push(format!("AUTH {}", config.mechanisms.join(" ")));
                }
                lines.push("8BITMIME".into());
                let mut out = String::new();
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i + 1 == lines.len() { ' ' } else { '-' };
                    out.push_str(&format!("250{sep}{l}\r\n"));
                }
                stream.write_all(out.as_bytes()).await?;
                tx = Transaction::default();
            }
            "HELO" => stream.write_all(b"250 test.invalid\r\n").await?,
            "STARTTLS" if config.starttls.is_some() && !tls => {
                stream.write_all(b"220 2.0.0 go ahead\r\n").await?;
                stream.flush().await?;
                return Ok(End::StartTls);
            }
            "AUTH" if config.auth.is_some() && tx.auth.is_none() => {
                let mut words = line.split_whitespace().skip(1);
                let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
                let initial = words.next().map(str::to_string);
                let credentials = match mechanism.as_str() {
                    "PLAIN" if config.mechanisms.contains(&"PLAIN") => {
                        let payload = match initial {
                            Some(p) => p,
                            None => {
                                stream.write_all(b"334 \r\n").await?;
                                read_line(&mut stream).await?.unwrap_or_default()
                            }
                        };
                        decode(&payload).and_then(|raw| {
                            let mut parts = raw.split(|b| *b == 0).skip(1);
                            let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
                            let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
                            Some((user, pass))
                        })
                    }
                    "LOGIN" if config.mechanisms.contains(&"LOGIN") => {
                        let user = match initial {
                            Some(u) => u,
                            None => {
                                stream.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                                read_line(&mut stream).await?.unwrap_or_default()
                            }
                        };
                        stream.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        let pass = read_line(&mut stream).await?.unwrap_or_default();
                        decode(&user)
                            .and_then(|u| String::from_utf8(u).ok())
                            .zip(decode(&pass).and_then(|p| String::from_utf8(p).ok()))
                    }
                    _ => {
                        stream.write_all(b"504 5.5.4 mechanism not offered\r\n").await?;
                        continue;
                    }
                };
                if credentials.as_ref() == config.auth.as_ref() {
                    tx.auth = Some((mechanism, credentials.unwrap().0));
                    stream.write_all(b"235 2.7.0 authenticated\r\n").await?;
                } else {
                    stream.write_all(b"535 5.7.8 authentication credentials invalid\r\n").await?;
                }
            }
            "MAIL" if config.auth.is_some() && tx.auth.is_none() => {
                stream.write_all(b"530 5.7.0 authentication required\r\n").await?;
            }
            "MAIL" => {
                tx.mail_from = Some(address(&line));
                tx.rcpt_to.clear();
                stream.write_all(b"250 2.1.0 ok\r\n").await?;
            }
            "RCPT" if tx.mail_from.is_some() => {
                tx.rcpt_to.push(address(&line));
                stream.write_all(b"250 2.1.5 ok\r\n").await?;
            }
            "DATA" if tx.mail_from.is_some() && !tx.rcpt_to.is_empty() => {
                stream.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    let Some(l) = read_line(&mut stream).await? else { return Ok(End::Closed) };
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push_str("\r\n");
                }
                shared.received.lock().unwrap().push(Received {
                    tls,
                    auth: tx.auth.clone(),
                    mail_from: tx.mail_from.take().unwrap(),
                    rcpt_to: std::mem::take(&mut tx.rcpt_to),
                    data,
                });
                stream.write_all(b"250 2.0.0 queued as 1\r\n").await?;
            }
            "RSET" => {
                tx.mail_from = None;
                tx.rcpt_to.clear();
                stream.write_all(b"250 2.0.0 ok\r\n").await?;
            }
            "NOOP" => stream.write_all(b"250 2.0.0 ok\r\n").await?,
            "QUIT" => {
                stream.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(End::Closed);
            }
            _ => stream.write_all(b"503 5.5.1 bad sequence or unknown command\r\n").await?,
        }
        stream.flush().await?;
    }
}

/// One CRLF-terminated line without its terminator; None at end of stream.
async fn read_line<S: AsyncBufRead + Unpin>(stream: &mut S) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    if stream.read_until(b'\n', &mut buf).await? == 0 {
        return Ok(None);
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// `MAIL FROM:<a@b> SIZE=1` → `a@b`.
fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()
}
