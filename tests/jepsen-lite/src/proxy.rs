//! Partitions without root: a TCP proxy in front of every node's peer
//! listener. Node B's peers know it by its *advertised* peer address, where
//! the proxy listens; the proxy forwards each connection to B's real
//! listener. Every node makes its peer connections from its own 127.0.0.K
//! (`peer_source_addr`), so the proxy knows which node each connection comes
//! from, and a cut A -> B holds every byte A sends to B: on connections A
//! opened to B's proxy, and A's answers on connections B opened to A's.
//! Held, not refused: a connection under a cut stays open and goes quiet,
//! as on a real partition, and whatever it held flows on the heal (TCP
//! would have retransmitted it).
//!
//! All node-to-node traffic goes over the peer port (Raft, clock samples,
//! digests, forwarded writes), so cutting it cuts the pair. What `nft` cuts
//! in the kernel this cuts in user space; [`crate::net::Partitions`] drives
//! either.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::net::Cut;

/// One node behind the proxy.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub node: u64,
    /// Where its peers reach it (the proxy listens here).
    pub advertised: SocketAddr,
    /// Where it really listens.
    pub real: SocketAddr,
}

/// The cuts the proxy enforces; cheap to clone.
#[derive(Clone)]
pub struct Cuts(Arc<watch::Sender<BTreeSet<Cut>>>);

impl Cuts {
    /// Replaces the cuts: bytes held by a cut that is gone flow at once.
    pub fn set(&self, cuts: &BTreeSet<Cut>) {
        self.0.send_replace(cuts.clone());
    }
}

/// The running proxy; its listeners and connections stop on drop.
pub struct PeerProxy {
    /// The links as bound (an advertised port 0 is replaced by the one bound).
    pub links: Vec<Link>,
    tasks: Vec<JoinHandle<()>>,
    conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl Drop for PeerProxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.conns.lock().expect("proxy connections").iter() {
            t.abort();
        }
    }
}

/// The node a connection comes from: K for a 127.0.0.K source. Cuts name
/// nodes only, so the harness (127.0.0.100) is never cut; any other source
/// is not a node and is never cut either.
fn node_of(ip: IpAddr) -> Option<u64> {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] > 0 => Some(u64::from(v4.octets()[3])),
        _ => None,
    }
}

/// Binds a listener on every link's advertised address and starts forwarding.
pub async fn start(links: &[Link]) -> std::io::Result<(PeerProxy, Cuts)> {
    let (tx, _) = watch::channel(BTreeSet::new());
    let cuts = Cuts(Arc::new(tx));
    let conns: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    for link in links.iter().copied() {
        let listener = TcpListener::bind(link.advertised).await?;
        let link = Link { advertised: listener.local_addr()?, ..link };
        bound.push(link);
        let (cuts, conns) = (cuts.clone(), conns.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok((down, from)) = listener.accept().await {
                let source = node_of(from.ip());
                let cuts = cuts.clone();
                let task = tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(link.real).await else { return };
                    let _ = down.set_nodelay(true);
                    let _ = up.set_nodelay(true);
                    let (down_r, down_w) = down.into_split();
                    let (up_r, up_w) = up.into_split();
                    // Bytes from the dialling node to this one, and the answers back.
                    let to_node = source.map(|s| (s, link.node));
                    let from_node = source.map(|s| (link.node, s));
                    let a = tokio::spawn(pump(down_r, up_w, to_node, cuts.0.subscribe()));
                    let b = tokio::spawn(pump(up_r, down_w, from_node, cuts.0.subscribe()));
                    let _ = tokio::join!(a, b);
                });
                let mut all = conns.lock().expect("proxy connections");
                all.retain(|t| !t.is_finished());
                all.push(task);
            }
        }));
    }
    Ok((PeerProxy { links: bound, tasks, conns }, cuts))
}

/// Copies `from` to `to`, holding each chunk while `dir` is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    dir: Option<Cut>,
    mut cuts: watch::Receiver<BTreeSet<Cut>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(dir) = dir {
            if cuts.wait_for(|c| !c.contains(&dir)).await.is_err() {
                break;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(wait, s.read_exact(&mut got)).await.ok()?.ok()?;
        Some(got)
    }

    /// Node 1 talks to node 2 through node 2's proxy: bytes flow; a cut 1 -> 2
    /// holds them (the connection stays open); the heal delivers them; a cut
    /// 2 -> 1 holds the answers only; the harness's own address is never cut.
    #[tokio::test]
    async fn a_cut_holds_one_direction_of_one_pair_and_the_heal_delivers() {
        let real = echo().await;
        let advertised: SocketAddr = {
            let probe = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
            probe.local_addr().unwrap()
        };
        let links = [Link { node: 2, advertised, real }];
        let (_proxy, cuts) = start(&links).await.unwrap();
        let dial = |from: &str| {
            let from: IpAddr = from.parse().unwrap();
            async move {
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind(SocketAddr::new(from, 0)).unwrap();
                sock.connect(advertised).await.unwrap()
            }
        };
        let mut s = dial("127.0.0.1").await;
        let short = Duration::from_millis(300);
        assert_eq!(round_trip(&mut s, b"ping", Duration::from_secs(5)).await.as_deref(), Some(&b"ping"[..]));

        cuts.set(&[(1, 2)].into());
        assert_eq!(round_trip(&mut s, b"held", short).await, None, "a cut 1 -> 2 holds what 1 sends");
        let mut harness = dial("127.0.0.100").await;
        assert!(round_trip(&mut harness, b"free", Duration::from_secs(5)).await.is_some(), "not a node: never cut");
        cuts.set(&BTreeSet::new());
        let mut got = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"held", "the heal delivers what the cut held, on the same connection");

        cuts.set(&[(2, 1)].into());
        assert_eq!(round_trip(&mut s, b"back", short).await, None, "a cut 2 -> 1 holds the answers");
        cuts.set(&BTreeSet::new());
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"back");
    }
}
