use super::*;

/// Two AWS regions and one GCP region, one instance type per cloud.
pub(crate) const SMALL: &str = r#"
version: test-1
regions:
  - { cloud: aws, name: eu-central-1, egress: { internetPerGb: 0.09, toRegionsPerGb: { "aws:us-east-1": 0.02 } } }
  - { cloud: aws, name: us-east-1, egress: { internetPerGb: 0.09 } }
  - { cloud: gcp, name: us-east1, egress: { internetPerGb: 0.12 } }
instanceTypes:
  - { cloud: aws, name: m5.large, vcpus: 2, memoryGib: 8, hourlyUsd: { eu-central-1: 0.115, us-east-1: 0.096 } }
  - { cloud: gcp, name: e2-standard-2, vcpus: 2, memoryGib: 8, hourlyUsd: { us-east1: 0.067 } }
network:
  - { a: "aws:eu-central-1", b: "aws:us-east-1", rttMs: 90, throughputGbps: 5 }
  - { a: "aws:eu-central-1", b: "gcp:us-east1", rttMs: 95 }
  - { a: "gcp:us-east1", b: "aws:us-east-1", rttMs: 12, throughputGbps: 9 }
"#;

fn small() -> CatalogData {
    match serde_yaml::from_str(SMALL) {
        Ok(data) => data,
        Err(e) => panic!("fixture parses: {e}"),
    }
}

fn err(data: CatalogData) -> CatalogError {
    match Catalog::new(data) {
        Ok(_) => panic!("expected the catalog to be refused"),
        Err(e) => e,
    }
}

#[test]
fn builtin_loads_with_regions_prices_and_a_complete_matrix() {
    let c = Catalog::builtin().expect("builtin catalog is valid");
    assert_eq!(c.version(), "2026-11");
    let fra = c.region_id("aws:eu-central-1").expect("Frankfurt");
    let seoul = c.region_id("aws:ap-northeast-2").expect("Seoul");
    let virginia = c.region_id("aws:us-east-1").expect("Virginia");
    let gcp_seoul = c.region_id("gcp:asia-northeast3").expect("GCP Seoul");
    let link = c.link(fra, seoul).expect("measured");
    assert!((150.0..350.0).contains(&link.rtt_ms), "{link:?}");
    assert_eq!(c.link(fra, seoul), c.link(seoul, fra));
    assert!(c.link(virginia, gcp_seoul).is_some());
    // Same region: the intra-region default.
    assert_eq!(c.link(fra, fra).map(|l| l.rtt_ms), Some(1.0));
    assert_eq!(c.egress_per_gb(fra, virginia), 0.02);
    assert_eq!(c.egress_per_gb(fra, gcp_seoul), 0.09);
    assert_eq!(c.egress_per_gb(fra, fra), 0.0);
    let e2 = c
        .instance_types()
        .iter()
        .find(|t| t.name == "e2-micro")
        .expect("shared-core type priced from the file");
    assert_eq!(e2.vcpus, 0.25);
    assert!(c.instance_types().iter().any(|t| t.gpus > 0));
    assert!(c.regions().len() >= 40);
    assert!(!c.data().sources.is_empty());
}

#[test]
fn json_and_yaml_give_the_same_catalog() {
    let yaml = Catalog::from_yaml(SMALL).expect("valid");
    let json = serde_json::to_string(yaml.data()).expect("serialises");
    let back = Catalog::from_json(&json).expect("valid");
    assert_eq!(back.data(), yaml.data());
}

#[test]
fn malformed_text_reports_the_position() {
    let e = Catalog::from_json("{\"version\": \"x\", \"regions\": [").expect_err("malformed");
    assert!(matches!(e, CatalogError::Json { .. }));
    assert!(e.to_string().contains("line 1"), "{e}");
    let e = Catalog::from_yaml("version: x\nregions: 3\n").expect_err("malformed");
    assert!(e.to_string().starts_with("malformed catalog YAML"), "{e}");
    let e = Catalog::from_yaml("version: x\nregions: []\nextra: 1\n").expect_err("unknown field");
    assert!(e.to_string().contains("unknown field `extra`"), "{e}");
}

#[test]
fn negative_and_non_finite_numbers_are_refused() {
    let mut d = small();
    d.instance_types[0]
        .hourly_usd
        .insert("us-east-1".into(), -0.1);
    let e = err(d);
    assert_eq!(
        e.to_string(),
        "hourly price of aws:m5.large in us-east-1 is -0.1; expected a finite price >= 0"
    );
    let mut d = small();
    d.regions[1].egress.internet_per_gb = f64::NAN;
    assert!(
        err(d)
            .to_string()
            .contains("egress.internetPerGb of region aws:us-east-1")
    );
    let mut d = small();
    d.network[0].rtt_ms = 0.0;
    assert!(
        err(d)
            .to_string()
            .contains("rttMs between aws:eu-central-1 and aws:us-east-1")
    );
    let mut d = small();
    d.instance_types[0].memory_gib = 0.0;
    assert!(
        err(d)
            .to_string()
            .contains("memoryGib of instance type aws:m5.large")
    );
}

#[test]
fn unknown_region_references_are_named() {
    let mut d = small();
    d.instance_types[0]
        .hourly_usd
        .insert("eu-centrl-1".into(), 0.1);
    assert_eq!(
        err(d).to_string(),
        "unknown region `aws:eu-centrl-1` in the hourly prices of instance type aws:m5.large"
    );
    let mut d = small();
    d.network[1].b = "gcp:us-east9".into();
    assert!(
        err(d)
            .to_string()
            .starts_with("unknown region `gcp:us-east9` in network entry 1")
    );
    let mut d = small();
    d.regions[0]
        .egress
        .to_regions_per_gb
        .insert("aws:mars-1".into(), 0.01);
    assert!(
        err(d)
            .to_string()
            .contains("egress.toRegionsPerGb of region aws:eu-central-1")
    );
}

#[test]
fn missing_matrix_entries_are_named() {
    let mut d = small();
    d.network.remove(2);
    assert_eq!(
        err(d).to_string(),
        "no network entry between `aws:us-east-1` and `gcp:us-east1` (1 region pairs missing \
         in all); add a `network` entry or set `networkLike` on the user-declared region"
    );
}

#[test]
fn duplicates_and_missing_version_are_refused() {
    let mut d = small();
    d.regions.push(d.regions[0].clone());
    assert_eq!(err(d).to_string(), "duplicate region `aws:eu-central-1`");
    let mut d = small();
    let mut again = d.network[0].clone();
    std::mem::swap(&mut again.a, &mut again.b);
    d.network.push(again);
    assert!(matches!(
        err(d),
        CatalogError::Duplicate {
            what: "network entry",
            ..
        }
    ));
    let mut d = small();
    d.version = " ".into();
    assert!(matches!(err(d), CatalogError::MissingVersion));
    let mut d = small();
    d.regions[0].name = "eu central".into();
    assert!(matches!(err(d), CatalogError::InvalidName { .. }));
}

fn hospital(like: &str) -> RegionData {
    RegionData {
        cloud: "openstack".into(),
        name: "hospital-eu".into(),
        location: Some("Frankfurt".into()),
        egress: EgressData::default(),
        network_like: Some(like.into()),
        extra_rtt_ms: 4.0,
    }
}

#[test]
fn overlay_adds_private_sites_that_borrow_a_public_regions_network() {
    let base = Catalog::from_yaml(SMALL).expect("valid");
    let overlay = CatalogOverlay {
        version: "hospitals".into(),
        regions: vec![hospital("aws:eu-central-1")],
        ..CatalogOverlay::default()
    };
    let merged = base.with_overlay(&overlay).expect("valid overlay");
    assert_eq!(merged.version(), "test-1+hospitals");
    let h = merged.region_id("openstack:hospital-eu").expect("added");
    let us = merged.region_id("aws:us-east-1").expect("kept");
    let fra = merged.region_id("aws:eu-central-1").expect("kept");
    let link = merged.link(h, us).expect("borrowed");
    assert_eq!(link.rtt_ms, 94.0);
    assert_eq!(link.throughput_gbps, Some(5.0));
    // To its own stand-in region: intra-region RTT plus the last mile.
    assert_eq!(merged.link(h, fra).map(|l| l.rtt_ms), Some(5.0));
    // Private sites egress for free unless the overlay prices it.
    assert_eq!(merged.egress_per_gb(h, us), 0.0);

    // An explicit entry wins over the borrowed one.
    let overlay = CatalogOverlay {
        version: "hospitals-2".into(),
        regions: vec![hospital("aws:eu-central-1")],
        network: vec![LinkData {
            a: "aws:us-east-1".into(),
            b: "openstack:hospital-eu".into(),
            rtt_ms: 120.0,
            rtt_max_ms: None,
            throughput_gbps: None,
            flags: vec![],
        }],
        ..CatalogOverlay::default()
    };
    let merged = base.with_overlay(&overlay).expect("valid overlay");
    let h = merged.region_id("openstack:hospital-eu").expect("added");
    assert_eq!(merged.link(h, us).map(|l| l.rtt_ms), Some(120.0));
}

#[test]
fn overlay_merges_prices_and_replaces_measurements() {
    let base = Catalog::from_yaml(SMALL).expect("valid");
    let overlay = CatalogOverlay::from_yaml(
        r#"
version: negotiated
instanceTypes:
  - { cloud: aws, name: m5.large, vcpus: 2, memoryGib: 8, hourlyUsd: { us-east-1: 0.05 } }
network:
  - { a: "aws:us-east-1", b: "aws:eu-central-1", rttMs: 80 }
"#,
    )
    .expect("parses");
    let merged = base.with_overlay(&overlay).expect("valid");
    let m5 = &merged.instance_types()[0];
    assert_eq!(m5.hourly_usd.get("us-east-1"), Some(&0.05));
    assert_eq!(m5.hourly_usd.get("eu-central-1"), Some(&0.115));
    let (fra, us) = (
        merged.region_id("aws:eu-central-1").expect("kept"),
        merged.region_id("aws:us-east-1").expect("kept"),
    );
    assert_eq!(merged.link(fra, us).map(|l| l.rtt_ms), Some(80.0));
    assert_eq!(merged.data().network.len(), base.data().network.len());
}

#[test]
fn bad_overlays_are_refused_with_the_cause() {
    let base = Catalog::from_yaml(SMALL).expect("valid");
    let e = base
        .with_overlay(&CatalogOverlay::default())
        .expect_err("no version");
    assert!(matches!(e, CatalogError::InvalidOverlay { .. }));
    let overlay = CatalogOverlay {
        version: "x".into(),
        regions: vec![hospital("aws:eu-west-9")],
        ..CatalogOverlay::default()
    };
    assert_eq!(
        base.with_overlay(&overlay)
            .expect_err("unknown")
            .to_string(),
        "unknown region `aws:eu-west-9` in networkLike of region openstack:hospital-eu"
    );
    // A private site without networkLike or entries cannot be reached.
    let mut lonely = hospital("aws:eu-central-1");
    lonely.network_like = None;
    let overlay = CatalogOverlay {
        version: "x".into(),
        regions: vec![lonely],
        ..CatalogOverlay::default()
    };
    assert!(matches!(
        base.with_overlay(&overlay),
        Err(CatalogError::MissingLink { .. })
    ));
    // Borrowing from a borrower is refused.
    let mut second = hospital("openstack:hospital-eu");
    second.name = "hospital-us".into();
    let overlay = CatalogOverlay {
        version: "x".into(),
        regions: vec![hospital("aws:eu-central-1"), second],
        ..CatalogOverlay::default()
    };
    assert!(matches!(
        base.with_overlay(&overlay),
        Err(CatalogError::NetworkLikeChain { .. })
    ));
}
