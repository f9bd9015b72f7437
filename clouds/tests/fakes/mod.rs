//! Test peers for the clouds that have no real emulator we can run here.
//!
//! - [`gcp`]: a FAKE Compute Engine + OAuth token endpoint, written from Google's REST
//!   reference. `gcplocal` (PyPI) was tried first and dropped: it accepts any credentials,
//!   ignores `filter` on list calls and overwrites an instance on a repeated insert instead
//!   of answering 409, so it could not show the behaviours these tests are about.
//! - [`openstack`]: a FAKE Keystone v3 + Nova + Neutron, written from the OpenStack API
//!   reference.
//! - [`proxy`]: a TCP proxy that injects faults in front of a REAL peer (moto).
//!
//! The fakes check what the real services check where fedsky depends on it (RS256
//! signatures and claims, tokens on every call, unique names, metadata key syntax,
//! security groups in use) and can fail on demand.

#![allow(dead_code)]

pub mod gcp;
pub mod openstack;
pub mod proxy;

use std::net::SocketAddr;

/// Serves `router` on a free loopback port until the test ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn form(body: &str) -> std::collections::BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%' && i + 2 < b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A fresh 2048-bit RSA key as PKCS#8 PEM, made by the `openssl` command.
pub fn rsa_key() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("the openssl command runs");
    assert!(out.status.success(), "openssl genpkey failed");
    String::from_utf8(out.stdout).expect("PEM is text")
}
