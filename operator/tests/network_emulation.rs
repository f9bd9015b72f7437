//! The emulated network of the process runtime against a real Toxiproxy: a path gets the
//! catalog's latency and rate for its pair of regions, keeps its port when ensured again,
//! changes shape when the aggregator moves, and is gone after the job's cleanup.

use fedsky_e2e::toxiproxy::Toxiproxy;
use fedsky_operator::runtime::NetworkEmulator;
use fedsky_placement::Catalog;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server standing in for the aggregator.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Time for `n` bytes to go through the path and back.
async fn echo(addr: &str, n: usize) -> Duration {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let data = vec![7u8; n];
    let start = Instant::now();
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await.expect("write");
    };
    let recv = async {
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf).await.expect("read");
    };
    tokio::join!(send, recv);
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_take_the_shape_of_their_regions() {
    let toxiproxy = tokio::task::spawn_blocking(Toxiproxy::start)
        .await
        .expect("join")
        .expect("toxiproxy starts");
    let catalog = Catalog::builtin().expect("catalog");
    let net = NetworkEmulator::new(&toxiproxy.api(), catalog);
    let upstream = echo_server().await;

    // Seoul to Frankfurt: the catalog's RTT, a window-limited rate.
    let seoul = ("aws", "ap-northeast-2");
    let frankfurt = ("aws", "eu-central-1");
    let (listen, shape) = net
        .ensure_path("job-a.p-asia-0", &upstream, seoul, frankfurt)
        .await
        .expect("path");
    assert!(shape.rtt_ms > 150.0, "{shape:?}");
    let small = echo(&listen, 16).await;
    assert!(
        small.as_secs_f64() * 1000.0 >= 2.0 * shape.one_way_ms as f64 * 0.95,
        "a 16-byte echo took {small:?}, the path's RTT is {} ms",
        shape.rtt_ms
    );
    assert!(
        small < Duration::from_millis(shape.rtt_ms as u64 + 300),
        "{small:?}"
    );
    // 4 MB each way at the path's rate takes at least size / rate.
    let n = 4_000_000;
    let big = echo(&listen, n).await;
    let floor = n as f64 / (shape.rate_kb_per_s as f64 * 1000.0);
    assert!(
        big.as_secs_f64() >= floor * 0.95,
        "4 MB echoed in {big:?}, the rate allows no less than {floor:.3} s"
    );

    // Ensured again: same port. The aggregator moves next to the site: a short path.
    let (again, _) = net
        .ensure_path("job-a.p-asia-0", &upstream, seoul, frankfurt)
        .await
        .expect("again");
    assert_eq!(again, listen);
    let (moved, near) = net
        .ensure_path("job-a.p-asia-0", &upstream, seoul, seoul)
        .await
        .expect("moved");
    assert_eq!(moved, listen);
    assert!(near.rtt_ms < 10.0, "{near:?}");
    let quick = echo(&listen, 16).await;
    assert!(quick < Duration::from_millis(150), "{quick:?}");

    // Another job's path survives this job's cleanup; this job's is gone.
    let (other, _) = net
        .ensure_path("job-b.p-us-0", &upstream, ("aws", "us-east-1"), frankfurt)
        .await
        .expect("other job");
    net.remove_job("job-a").await.expect("cleanup");
    assert!(
        TcpStream::connect(&listen).await.is_err(),
        "proxy still listens"
    );
    echo(&other, 16).await;

    // An unknown region is an error naming it, not a silent unshaped path.
    let err = net
        .ensure_path("job-b.p-x-0", &upstream, ("aws", "mars-1"), frankfurt)
        .await
        .expect_err("unknown region");
    assert!(err.to_string().contains("aws:mars-1"), "{err}");
    drop(toxiproxy);
}
