//! The lab network that real nodes live on: one Linux bridge on this machine, its
//! gateway address (where control planes with real nodes listen), and the node slots
//! that hand each node a unique address and pod range, also across test processes.
//!
//! ```text
//!   host: bridge fedsky-lab0 10.250.0.1/16  <- API servers of clusters with real nodes
//!     |- veth -> node netns eth0 10.250.1.N/16, pods 10.128.N.0/24 on its cni0
//!     '- ...      routes on the host: 10.128.N.0/24 via 10.250.1.N
//! ```

use crate::error::{Error, io};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The bridge's name on this machine.
pub const BRIDGE: &str = "fedsky-lab0";
/// The host's address on the bridge: API servers of clusters with real nodes bind it.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
/// Prefix length of the lab network.
const PREFIX: u8 = 16;
/// Every node's pod range lies in this one (kube-proxy's `clusterCIDR`).
pub const POD_SUPERNET: &str = "10.128.0.0/16";
/// Nodes that can run at once on this machine.
const SLOTS: u16 = 250;
/// Where slot claims live; on tmpfs-like `/run` so a reboot frees them.
const SLOT_DIR: &str = "/run/fedsky-lab";

/// Runs `ip` (or another network tool) and fails with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            name: program.into(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            what: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Creates the bridge with the gateway address, and turns on forwarding, once per
/// machine; later calls find it there. Needs root (CAP_NET_ADMIN).
pub fn ensure_bridge() -> Result<(), Error> {
    let gateway = format!("{GATEWAY}/{PREFIX}");
    if run("ip", &["link", "show", BRIDGE]).is_err() {
        // Another process may create it in between: only a missing bridge afterwards fails.
        let _ = run("ip", &["link", "add", BRIDGE, "type", "bridge"]);
        run("ip", &["link", "show", BRIDGE])?;
    }
    let addrs = run("ip", &["-4", "-o", "addr", "show", "dev", BRIDGE])?;
    if !addrs.contains(&gateway) {
        let _ = run("ip", &["addr", "add", &gateway, "dev", BRIDGE]);
    }
    run("ip", &["link", "set", BRIDGE, "up"])?;
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    std::fs::write(forward, "1").map_err(io("write", forward))?;
    raise_inotify_instances()
}

/// inotify instances every node needs: its kubelet, containerd (whose CRI plugin fails to
/// load without one, and the kubelet then finds no runtime service) and kube-proxy each
/// hold several, all as root; Linux's default of 128 per user runs out at a few nodes.
const INOTIFY_INSTANCES: u64 = 8192;

fn raise_inotify_instances() -> Result<(), Error> {
    let path = Path::new("/proc/sys/fs/inotify/max_user_instances");
    let now: u64 = std::fs::read_to_string(path)
        .map_err(io("read", path))?
        .trim()
        .parse()
        .unwrap_or(0);
    if now < INOTIFY_INSTANCES {
        std::fs::write(path, INOTIFY_INSTANCES.to_string()).map_err(io("write", path))?;
    }
    Ok(())
}

/// One node's place on the lab network, held until dropped.
#[derive(Debug)]
pub struct Slot {
    index: u16,
    claim: PathBuf,
}

impl Slot {
    /// Claims the lowest free slot. A claim names its process; one whose process is gone
    /// (a test killed before it could clean up) is taken over.
    pub fn claim() -> Result<Self, Error> {
        let dir = Path::new(SLOT_DIR);
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        for index in 0..SLOTS {
            let claim = dir.join(format!("slot-{index}"));
            if let Ok(pid) = std::fs::read_to_string(&claim)
                && !Path::new(&format!("/proc/{}", pid.trim())).exists()
            {
                let _ = std::fs::remove_file(&claim);
            }
            match OpenOptions::new().write(true).create_new(true).open(&claim) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id()).map_err(io("write", &claim))?;
                    return Ok(Self { index, claim });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("create", &claim)(e)),
            }
        }
        Err(Error::Binaries(format!(
            "all {SLOTS} lab node slots in {SLOT_DIR} are taken"
        )))
    }

    /// The node's address on the lab network.
    pub fn address(&self) -> Ipv4Addr {
        address_of(self.index)
    }

    /// The node's pod range, unique on this machine so that the host can route to it.
    pub fn pod_cidr(&self) -> String {
        pod_cidr_of(self.index)
    }

    /// The host end of the node's veth pair (at most 15 characters).
    pub fn host_link(&self) -> String {
        format!("fsk-n{}", self.index)
    }

    /// Address with prefix length, for `ip addr add`.
    pub fn address_cidr(&self) -> String {
        format!("{}/{PREFIX}", self.address())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.claim);
    }
}

fn address_of(index: u16) -> Ipv4Addr {
    // 10.250.1.10 onwards: 10.250.0.0/24 stays for the gateway.
    let n = index + 10;
    Ipv4Addr::new(10, 250, 1 + (n / 250) as u8, (n % 250) as u8)
}

fn pod_cidr_of(index: u16) -> String {
    format!("10.128.{index}.0/24")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_distinct_addresses_and_pod_ranges_inside_the_lab() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..SLOTS {
            let a = address_of(i);
            assert_eq!(a.octets()[..2], [10, 250]);
            assert_ne!(a.octets()[2], 0, "slot {i} collides with the gateway's /24");
            assert!(seen.insert(a), "slot {i} repeats {a}");
        }
        assert_eq!(pod_cidr_of(249), "10.128.249.0/24");
    }
}
