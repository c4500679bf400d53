//! The fleet of local targets the run flips up and down. Each target is an
//! HTTP server on its own port of [`TARGET_HOST`]; it answers 200, or 503 to
//! the nodes it is down for. Nodes probe from their own address (node K from
//! 127.0.0.K, `[probe] source_addrs`), so a target can be down for a minority
//! of nodes only: a flip the cluster must *not* call an outage.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::schedule::Rng;

/// Where the targets listen: not a node's address, so partitions between
/// nodes never cut a node off from a target.
pub const TARGET_HOST: &str = "127.0.0.150";

/// Who a target is down for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Down {
    /// Every node: an outage that must open an incident and alert.
    All,
    /// These nodes only, a minority: must not open an incident.
    Minority(BTreeSet<u64>),
}

#[derive(Clone)]
pub struct Target {
    pub url: String,
    down: Arc<Mutex<Option<Down>>>,
}

impl Target {
    pub async fn start() -> std::io::Result<Target> {
        let listener = tokio::net::TcpListener::bind((TARGET_HOST, 0)).await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let target = Target { url, down: Arc::default() };
        let app = Router::new().route("/", get(answer)).with_state(target.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Ok(target)
    }

    pub fn set(&self, down: Option<Down>) {
        *self.down.lock().unwrap() = down;
    }
}

/// Node K's address is 127.0.0.K.
fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] => Some(u64::from(v4.octets()[3])),
        _ => None,
    }
}

async fn answer(State(t): State<Target>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> StatusCode {
    let down = t.down.lock().unwrap().clone();
    let hit = match (down, node_of(peer.ip())) {
        (None, _) => false,
        (Some(Down::All), _) => true,
        (Some(Down::Minority(nodes)), Some(k)) => nodes.contains(&k),
        (Some(Down::Minority(_)), None) => false,
    };
    if hit {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// One flip: target `target` is down (for `down`) from `at` for `hold`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flip {
    pub target: usize,
    pub at: Duration,
    pub hold: Duration,
    pub down: Down,
}

/// Draws the flips of a run: per target, alternating up gaps (8–20 s) and
/// down spells (an outage for every node, 20–30 s, or a minority-only spell,
/// 10–20 s, one time in three), all ending before the last 20 % of the run.
/// An outage outlasts any one fault (at most 12 s), so a cluster that heals
/// has time to see it: a missed one is the cluster's fault, not the
/// schedule's.
pub fn draw(seed: u64, length: Duration, targets: usize, nodes: u64) -> Vec<Flip> {
    let mut rng = Rng::new(seed ^ 0x7461_7267_6574_7321);
    let end = length.mul_f64(0.8);
    let minority = (nodes - 1) / 2;
    let mut out = Vec::new();
    for target in 0..targets {
        let mut t = Duration::from_secs(rng.between(3, 12));
        loop {
            let (down, hold) = if rng.below(3) == 0 && minority > 0 {
                let mut set = BTreeSet::new();
                while (set.len() as u64) < minority {
                    set.insert(rng.between(1, nodes));
                }
                (Down::Minority(set), rng.between(10, 20))
            } else {
                (Down::All, rng.between(20, 30))
            };
            let hold = Duration::from_secs(hold);
            if t + hold > end {
                break;
            }
            out.push(Flip { target, at: t, hold, down });
            t += hold + Duration::from_secs(rng.between(8, 20));
        }
    }
    out.sort_by_key(|f| f.at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_are_seeded_bounded_and_per_target_apart() {
        let len = Duration::from_secs(300);
        let a = draw(5, len, 3, 5);
        assert_eq!(a, draw(5, len, 3, 5));
        assert!(a.iter().any(|f| f.down == Down::All));
        assert!(a.iter().any(|f| matches!(&f.down, Down::Minority(s) if s.len() == 2)));
        for t in 0..3 {
            let mine: Vec<&Flip> = a.iter().filter(|f| f.target == t).collect();
            for w in mine.windows(2) {
                assert!(w[0].at + w[0].hold < w[1].at, "{w:?}");
            }
        }
        assert!(a.iter().all(|f| f.at + f.hold <= len.mul_f64(0.8)));
    }

    #[tokio::test]
    async fn a_target_is_down_for_the_nodes_it_names() {
        let t = Target::start().await.unwrap();
        let get = |from: &'static str| {
            let url = t.url.clone();
            async move {
                let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
                let mut s = socket.connect(addr).await.unwrap();
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
                let mut reply = String::new();
                s.read_to_string(&mut reply).await.unwrap();
                reply[9..12].to_string()
            }
        };
        assert_eq!(get("127.0.0.2").await, "200");
        t.set(Some(Down::Minority([2].into())));
        assert_eq!(get("127.0.0.2").await, "503");
        assert_eq!(get("127.0.0.3").await, "200");
        t.set(Some(Down::All));
        assert_eq!(get("127.0.0.3").await, "503");
        t.set(None);
        assert_eq!(get("127.0.0.2").await, "200");
    }
}
