//! The shipped examples deserialize into the Rust types, so the operator reads what users
//! write (the API server tests in `e2e/` check the same files against the schema).

use fedsky_crds::{AggregatorPlacement, FederatedJob, MemberCluster, ParticipantPool};
use serde::Deserialize;
use std::path::Path;

#[test]
fn covid_xray_example_parses_into_the_api_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/covid-xray");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("example dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).expect("valid YAML");
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let ok = match kind.as_str() {
                "FederatedJob" => serde_yaml::from_value::<FederatedJob>(value).map(|_| ()),
                "AggregatorPlacement" => {
                    serde_yaml::from_value::<AggregatorPlacement>(value).map(|_| ())
                }
                "ParticipantPool" => serde_yaml::from_value::<ParticipantPool>(value).map(|_| ()),
                "MemberCluster" => serde_yaml::from_value::<MemberCluster>(value).map(|_| ()),
                _ => Ok(()),
            };
            if let Err(e) = ok {
                panic!("{}: {kind} does not parse: {e}", path.display());
            }
            kinds.push(kind);
        }
    }
    for k in [
        "FederatedJob",
        "AggregatorPlacement",
        "ParticipantPool",
        "MemberCluster",
    ] {
        assert!(kinds.iter().any(|x| x == k), "example lacks a {k}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "MemberCluster").count(), 5);
}

#[test]
fn crds_carry_category_short_names_and_status_subresource() {
    for crd in fedsky_crds::crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["fedsky".to_string()][..]),
            "{}",
            names.kind
        );
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{}",
            names.kind
        );
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{}",
            names.kind
        );
    }
}
