//! An HTTP target the tests turn up and down, per source address.
#![allow(dead_code)] // each test binary uses its own part

/// An HTTP target the test turns up and down, and can block for chosen source
/// addresses (each node probes from 127.0.0.K).
pub struct Target {
    pub url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    blocked: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<std::net::IpAddr>>>,
}

impl Target {
    pub async fn start() -> Target {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let blocked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let (u, b) = (up.clone(), blocked.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, peer)) = listener.accept().await else { return };
                if b.lock().unwrap().contains(&peer.ip()) {
                    drop(s); // a reset: this node cannot reach the target
                    continue;
                }
                let up = u.load(std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let status = if up { "200 OK" } else { "500 Internal Server Error" };
                    let resp = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        Target { url, up, blocked }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn block(&self, node: u64, blocked: bool) {
        let ip: std::net::IpAddr = format!("127.0.0.{node}").parse().unwrap();
        let mut set = self.blocked.lock().unwrap();
        if blocked {
            set.insert(ip);
        } else {
            set.remove(&ip);
        }
    }
}
