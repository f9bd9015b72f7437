//! Reading fedsky manifests from YAML files: several documents per file,
//! picked by `kind`.

use std::collections::BTreeMap;

use fedsky_crds::common::CloudProvider;
use fedsky_crds::{AggregatorPlacement, MemberCluster, ParticipantPool};
use serde::Deserialize;
use thiserror::Error;

/// The fedsky objects found in a set of YAML documents.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// AggregatorPlacements, in file order.
    pub placements: Vec<AggregatorPlacement>,
    /// ParticipantPools, in file order.
    pub pools: Vec<ParticipantPool>,
    /// MemberClusters, in file order.
    pub member_clusters: Vec<MemberCluster>,
}

/// Why manifests could not be read.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// A document is not YAML.
    #[error("{origin}: document {index} is not valid YAML: {source}")]
    Yaml {
        /// File name.
        origin: String,
        /// 1-based document number.
        index: usize,
        /// The parser's error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A document of a known kind does not match its schema.
    #[error("{origin}: {kind} in document {index} does not match its schema: {source}")]
    Schema {
        /// File name.
        origin: String,
        /// 1-based document number.
        index: usize,
        /// The document's kind.
        kind: String,
        /// The deserialiser's error, naming the field.
        #[source]
        source: serde_yaml::Error,
    },
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    kind: Option<String>,
}

impl Manifests {
    /// Adds the fedsky objects of a YAML text (documents of other kinds,
    /// and empty documents, are skipped).
    pub fn add_yaml(&mut self, origin: &str, text: &str) -> Result<(), ManifestError> {
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let index = i + 1;
            let value =
                serde_yaml::Value::deserialize(document).map_err(|source| ManifestError::Yaml {
                    origin: origin.to_string(),
                    index,
                    source,
                })?;
            if value.is_null() {
                continue;
            }
            let kind = serde_yaml::from_value::<Head>(value.clone())
                .ok()
                .and_then(|h| h.kind)
                .unwrap_or_default();
            let schema = |source| ManifestError::Schema {
                origin: origin.to_string(),
                index,
                kind: kind.clone(),
                source,
            };
            match kind.as_str() {
                "AggregatorPlacement" => self
                    .placements
                    .push(serde_yaml::from_value(value).map_err(schema)?),
                "ParticipantPool" => self
                    .pools
                    .push(serde_yaml::from_value(value).map_err(schema)?),
                "MemberCluster" => self
                    .member_clusters
                    .push(serde_yaml::from_value(value).map_err(schema)?),
                _ => {}
            }
        }
        Ok(())
    }

    /// Member clusters by name with their provider and region.
    pub fn cluster_locations(&self) -> BTreeMap<String, (CloudProvider, String)> {
        self.member_clusters
            .iter()
            .filter_map(|c| {
                c.metadata
                    .name
                    .clone()
                    .map(|n| (n, (c.spec.provider, c.spec.region.clone())))
            })
            .collect()
    }
}
