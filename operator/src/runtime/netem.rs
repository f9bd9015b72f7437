//! Emulated regions for the process runtime (`--network-emulator`): every participant
//! reaches its aggregator through its own Toxiproxy proxy that adds the latency and
//! bandwidth of the pair of regions (the participant's site, the aggregator's placement)
//! from the catalog's network matrix, so that on one machine a round takes as long as it
//! would between those regions. The kernel here has no `netem` qdisc; Toxiproxy is a
//! real TCP proxy and this module only drives its HTTP API.

use fedsky_placement::Catalog;
use fedsky_placement::catalog::region_key;
use fedsky_placement::model::{TimingModel, stream_bits_per_second};
use serde::Deserialize;
use std::time::Duration;

/// What went wrong shaping a path.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    /// The catalog does not know a region.
    #[error(
        "region {0} is not in the catalog: the emulated network needs the catalog's matrix for every site and aggregator region"
    )]
    UnknownRegion(String),
    /// A participant's site or its aggregator has no region to shape the path by.
    #[error(
        "{0} has no cloud/region: the emulated network shapes each path by the regions at both ends"
    )]
    MissingRegion(String),
    /// The catalog has no network data between two regions.
    #[error("the catalog has no network data between {0} and {1}")]
    NoLink(String, String),
    /// Toxiproxy could not be reached or refused a request.
    #[error("toxiproxy at {api}: {detail}")]
    Api {
        /// Its API URL.
        api: String,
        /// What failed.
        detail: String,
    },
}

/// The shape of one participant-to-aggregator path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathShape {
    /// Round-trip time in milliseconds (catalog).
    pub rtt_ms: f64,
    /// Delay added in each direction, in milliseconds (half the RTT, rounded).
    pub one_way_ms: u64,
    /// Rate of each direction in KB/s (1000 bytes, Toxiproxy's unit).
    pub rate_kb_per_s: u64,
}

/// The path between a site in `site` and an aggregator in `aggregator` (each
/// `(cloud, region)`), as the placement model sees it: the catalog's RTT, and one stream's
/// rate (throughput capped at a TCP window per RTT).
pub fn path_shape(
    catalog: &Catalog,
    timing: &TimingModel,
    site: (&str, &str),
    aggregator: (&str, &str),
) -> Result<PathShape, NetemError> {
    let id = |(cloud, region): (&str, &str)| {
        let key = region_key(cloud, region);
        catalog
            .region_id(&key)
            .ok_or(NetemError::UnknownRegion(key))
    };
    let (a, b) = (id(site)?, id(aggregator)?);
    let link = catalog.link(a, b).ok_or_else(|| {
        NetemError::NoLink(
            region_key(site.0, site.1),
            region_key(aggregator.0, aggregator.1),
        )
    })?;
    let bps = stream_bits_per_second(link, timing);
    Ok(PathShape {
        rtt_ms: link.rtt_ms,
        // Sub-millisecond precision is below what Toxiproxy's timer honours.
        one_way_ms: (link.rtt_ms / 2.0).round() as u64,
        rate_kb_per_s: ((bps / 8.0 / 1000.0).round() as u64).max(1),
    })
}

/// A Toxiproxy proxy name for a participant of a job: Toxiproxy takes names in URL paths.
pub fn proxy_name(job_key: &str, participant: &str) -> String {
    format!("{job_key}.{participant}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The toxics that give a path its shape, by name: latency and bandwidth in both
/// directions.
fn toxics(shape: &PathShape) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for stream in ["upstream", "downstream"] {
        for (kind, attributes) in [
            (
                "latency",
                serde_json::json!({ "latency": shape.one_way_ms, "jitter": 0 }),
            ),
            (
                "bandwidth",
                serde_json::json!({ "rate": shape.rate_kb_per_s }),
            ),
        ] {
            let name = format!("{kind}_{stream}");
            let body = serde_json::json!({
                "name": name, "type": kind, "stream": stream,
                "toxicity": 1.0, "attributes": attributes
            });
            out.push((name, body));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct Proxy {
    listen: String,
    upstream: String,
}

/// A Toxiproxy server that shapes the process runtime's paths, with the catalog that
/// gives each path its shape.
#[derive(Debug, Clone)]
pub struct NetworkEmulator {
    api: String,
    http: reqwest::Client,
    catalog: &'static Catalog,
    timing: TimingModel,
}

impl NetworkEmulator {
    /// An emulator driving the Toxiproxy API at `api` (e.g. `http://127.0.0.1:8474`).
    pub fn new(api: &str, catalog: &'static Catalog) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            api: api.trim_end_matches('/').to_string(),
            http,
            catalog,
            timing: TimingModel::default(),
        }
    }

    fn err(&self, detail: impl std::fmt::Display) -> NetemError {
        NetemError::Api {
            api: self.api.clone(),
            detail: detail.to_string(),
        }
    }

    /// Makes sure proxy `name` forwards to `upstream` with the shape of the path from
    /// `site` to `aggregator`; returns the address participants dial. Idempotent: an
    /// existing proxy keeps its port (a restarted operator hands out the same endpoint).
    pub async fn ensure_path(
        &self,
        name: &str,
        upstream: &str,
        site: (&str, &str),
        aggregator: (&str, &str),
    ) -> Result<(String, PathShape), NetemError> {
        let shape = path_shape(self.catalog, &self.timing, site, aggregator)?;
        let url = format!("{}/proxies/{name}", self.api);
        let resp = self.send(self.http.get(&url)).await?;
        let proxy: Proxy = if resp.status() == reqwest::StatusCode::NOT_FOUND {
            let body = serde_json::json!({
                "name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true
            });
            let resp = self.post(&format!("{}/proxies", self.api), &body).await?;
            self.json(resp, "creating proxy").await?
        } else {
            let existing: Proxy = self.json(resp, "reading proxy").await?;
            if existing.upstream == upstream {
                existing
            } else {
                let body = serde_json::json!({ "upstream": upstream, "enabled": true });
                let resp = self.post(&url, &body).await?;
                self.json(resp, "updating proxy").await?
            }
        };
        for (tname, toxic) in toxics(&shape) {
            // Update in place when it exists (a re-placed aggregator changes the shape).
            let resp = self.post(&format!("{url}/toxics/{tname}"), &toxic).await?;
            let (resp, what) = if resp.status() == reqwest::StatusCode::NOT_FOUND {
                (
                    self.post(&format!("{url}/toxics"), &toxic).await?,
                    "adding toxic",
                )
            } else {
                (resp, "updating toxic")
            };
            self.json::<serde_json::Value>(resp, what).await?;
        }
        Ok((proxy.listen, shape))
    }

    /// Removes proxy `name` (nothing when it is gone already).
    pub async fn remove(&self, name: &str) -> Result<(), NetemError> {
        let resp = self
            .send(self.http.delete(format!("{}/proxies/{name}", self.api)))
            .await?;
        let status = resp.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.err(format!("deleting proxy {name}: HTTP {status}")))
        }
    }

    /// Removes every proxy of a job.
    pub async fn remove_job(&self, job_key: &str) -> Result<(), NetemError> {
        let resp = self
            .send(self.http.get(format!("{}/proxies", self.api)))
            .await?;
        let all: std::collections::BTreeMap<String, serde_json::Value> =
            self.json(resp, "listing proxies").await?;
        let prefix = proxy_name(job_key, "");
        for name in all.keys().filter(|n| n.starts_with(&prefix)) {
            self.remove(name).await?;
        }
        Ok(())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, NetemError> {
        req.send().await.map_err(|e| self.err(e))
    }

    async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, NetemError> {
        self.send(self.http.post(url).json(body)).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        what: &str,
    ) -> Result<T, NetemError> {
        let status = resp.status();
        let body = resp.text().await.map_err(|e| self.err(e))?;
        if !status.is_success() {
            return Err(self.err(format!("{what}: HTTP {status}: {}", body.trim())));
        }
        serde_json::from_str(&body).map_err(|e| self.err(format!("{what}: {e}: {body}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> &'static Catalog {
        Catalog::builtin().expect("builtin catalog")
    }

    #[test]
    fn a_long_path_is_window_limited_and_half_its_rtt_each_way() {
        let t = TimingModel::default();
        let s = path_shape(
            catalog(),
            &t,
            ("aws", "ap-northeast-2"),
            ("aws", "eu-central-1"),
        )
        .expect("shape");
        let c = catalog();
        let link = c
            .link(
                c.region_id("aws:ap-northeast-2").expect("seoul"),
                c.region_id("aws:eu-central-1").expect("frankfurt"),
            )
            .expect("link");
        assert_eq!(s.rtt_ms, link.rtt_ms);
        assert_eq!(s.one_way_ms, (link.rtt_ms / 2.0).round() as u64);
        // 4 MiB per RTT, in KB/s.
        let window = 4.0 * 1_048_576.0 / (link.rtt_ms / 1000.0) / 1000.0;
        let measured = link
            .throughput_gbps
            .map_or(f64::INFINITY, |g| g * 1e9 / 8e3);
        assert_eq!(s.rate_kb_per_s, window.min(measured).round() as u64);
    }

    #[test]
    fn shapes_are_symmetric_and_a_nearer_aggregator_is_faster() {
        let t = TimingModel::default();
        let c = catalog();
        let ab = path_shape(c, &t, ("aws", "us-east-1"), ("gcp", "us-west1")).expect("ab");
        let ba = path_shape(c, &t, ("gcp", "us-west1"), ("aws", "us-east-1")).expect("ba");
        assert_eq!(ab, ba);
        let near = path_shape(c, &t, ("aws", "us-east-1"), ("aws", "us-east-2")).expect("near");
        let far = path_shape(c, &t, ("aws", "us-east-1"), ("aws", "ap-northeast-2")).expect("far");
        assert!(near.one_way_ms < far.one_way_ms);
        assert!(near.rate_kb_per_s >= far.rate_kb_per_s);
    }

    #[test]
    fn unknown_regions_are_named() {
        let t = TimingModel::default();
        let e = path_shape(catalog(), &t, ("aws", "mars-1"), ("aws", "us-east-1"))
            .expect_err("unknown");
        assert!(e.to_string().contains("aws:mars-1"), "{e}");
    }

    #[test]
    fn proxy_names_are_url_safe_and_prefixed_by_the_job() {
        let n = proxy_name("ns/job", "job-eu-0");
        assert_eq!(n, "ns_job.job-eu-0");
        assert!(n.starts_with(&proxy_name("ns/job", "")));
    }

    #[test]
    fn every_direction_gets_latency_and_bandwidth() {
        let shape = PathShape {
            rtt_ms: 100.0,
            one_way_ms: 50,
            rate_kb_per_s: 4000,
        };
        let t: Vec<serde_json::Value> = toxics(&shape).into_iter().map(|(_, b)| b).collect();
        assert_eq!(t.len(), 4);
        for stream in ["upstream", "downstream"] {
            assert!(t.iter().any(|x| x["stream"] == stream
                && x["type"] == "latency"
                && x["attributes"]["latency"] == 50));
            assert!(t.iter().any(|x| x["stream"] == stream
                && x["type"] == "bandwidth"
                && x["attributes"]["rate"] == 4000));
        }
    }
}
