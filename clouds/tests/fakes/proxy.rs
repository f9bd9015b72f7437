//! A TCP proxy in front of a real peer that can refuse connections or lose the answer
//! to a request, to test what a client does after a failure it cannot see through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fault switches, shared with the test.
#[derive(Debug, Default)]
pub struct Faults {
    /// Requests (read chunks) to answer by closing the connection, unforwarded.
    pub refuse: AtomicUsize,
    /// While set, every connection is closed unforwarded (the peer is "down").
    pub down: AtomicBool,
    /// A byte string: the next request containing it is forwarded, but its answer is
    /// dropped and the connection closed.
    pub lose_answer_to: std::sync::Mutex<Option<Vec<u8>>>,
    /// Answers lost so far.
    pub lost: AtomicUsize,
}

/// Starts the proxy to `upstream`; answers its address and the switches.
pub async fn start(upstream: SocketAddr) -> (SocketAddr, Arc<Faults>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let faults = Arc::new(Faults::default());
    let f = faults.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let f = f.clone();
            tokio::spawn(async move {
                let _ = relay(client, upstream, &f).await;
            });
        }
    });
    (addr, faults)
}

async fn relay(client: TcpStream, upstream: SocketAddr, f: &Faults) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let lose = Arc::new(AtomicBool::new(false));
    let lose2 = lose.clone();
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 || lose2.load(Ordering::SeqCst) {
                // Either the peer closed, or this answer is to be lost: close on the client.
                return Ok::<_, std::io::Error>(());
            }
            cw.write_all(&buf[..n]).await?;
        }
    };
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if f.down.load(Ordering::SeqCst)
                || f.refuse
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
                    .is_ok()
            {
                return Ok(());
            }
            {
                let mut marker = f.lose_answer_to.lock().expect("lock");
                if let Some(m) = marker.as_ref()
                    && buf[..n].windows(m.len()).any(|w| w == m.as_slice())
                {
                    *marker = None;
                    lose.store(true, Ordering::SeqCst);
                    f.lost.fetch_add(1, Ordering::SeqCst);
                }
            }
            sw.write_all(&buf[..n]).await?;
        }
    };
    // Whichever side ends first ends the connection (dropping both halves closes it).
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}
