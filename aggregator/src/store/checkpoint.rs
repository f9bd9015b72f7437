//! The checkpoint layout in an [`ObjectStore`]:
//!
//! ```text
//! models/v00000003.safetensors   global model after round 3 (version 3)
//! models/v00000003.json          its VersionInfo (round, sha256, size, time, metrics)
//! state/r00000003.safetensors    strategy state after round 3 (FedOpt moments), if any
//! checkpoint.json                CheckpointRecord: the commit point of the last round
//! ```
//!
//! Blobs are written first and `checkpoint.json` last; it names every blob
//! with its sha256, which is verified on resume. Strategy state goes into
//! safetensors rather than JSON so f32 moments come back bit for bit.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ObjectStore, StoreError};
use crate::model::{Model, ModelError, TensorData};
use crate::round::{ParticipantId, RoundCheckpoint};
use crate::strategy::{FedOptState, StrategyCheckpoint};
use crate::update::{UpdateLimits, decode_model};

/// Key of the commit record.
pub const CHECKPOINT_KEY: &str = "checkpoint.json";
/// Version of the record format, bumped on incompatible changes.
const FORMAT: u32 = 1;

/// Lowercase hex sha256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn model_key(version: u64) -> String {
    format!("models/v{version:08}.safetensors")
}

fn info_key(version: u64) -> String {
    format!("models/v{version:08}.json")
}

fn state_key(round: u64) -> String {
    format!("state/r{round:08}.safetensors")
}

/// The version of a model or info key, exactly as [`model_key`] and
/// [`info_key`] write them; `None` for any other key.
fn version_of_key(key: &str) -> Option<u64> {
    let (digits, _) = key.strip_prefix("models/v")?.split_once('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let version: u64 = digits.parse().ok()?;
    (key == model_key(version) || key == info_key(version)).then_some(version)
}

pub use fedsky_contract::VersionInfo;

/// A global model with its encoding and hash, shared by every reader.
#[derive(Debug)]
pub struct GlobalModel {
    /// Version number.
    pub version: u64,
    /// Decoded model.
    pub model: Arc<Model>,
    /// Safetensors encoding (what participants download).
    pub bytes: Bytes,
    /// sha256 (hex) of `bytes`.
    pub sha256: String,
}

impl GlobalModel {
    /// Encodes `model` as version `version`.
    pub fn new(version: u64, model: Model) -> Result<Self, ModelError> {
        let bytes = Bytes::from(model.to_safetensors()?);
        Ok(Self {
            version,
            sha256: sha256_hex(&bytes),
            model: Arc::new(model),
            bytes,
        })
    }

    /// Decodes stored or user-supplied safetensors bytes (any size; the
    /// content is still fully validated).
    pub fn from_bytes(version: u64, bytes: Bytes) -> Result<Self, crate::update::UpdateRejection> {
        let model = decode_model(&bytes, &trusted_limits())?;
        Ok(Self {
            version,
            sha256: sha256_hex(&bytes),
            model: Arc::new(model),
            bytes,
        })
    }

    /// A fresh [`VersionInfo`] for this model.
    pub fn info(
        &self,
        metrics: BTreeMap<String, f64>,
        contributors: Vec<ParticipantId>,
    ) -> VersionInfo {
        VersionInfo {
            version: self.version,
            sha256: self.sha256.clone(),
            size: self.bytes.len() as u64,
            created_at_unix_ms: unix_ms(),
            metrics,
            contributors,
        }
    }
}

fn trusted_limits() -> UpdateLimits {
    UpdateLimits {
        max_update_bytes: u64::MAX,
        max_header_bytes: 64 << 20,
        max_update_norm: None,
    }
}

/// Location and hash of a blob named by a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobRef {
    /// Store key.
    pub key: String,
    /// sha256 (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The commit record of the last complete round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    /// Record format version.
    pub format: u32,
    /// Job name.
    pub job: String,
    /// Round machine state (config, completed rounds, participants).
    pub rounds: RoundCheckpoint,
    /// Strategy config; FedOpt moments are in `strategy_state`.
    pub strategy: StrategyCheckpoint,
    /// Round whose update the FedOpt moments include.
    #[serde(default)]
    pub optimizer_last_round: Option<u64>,
    /// FedOpt moments as safetensors (`m_t`, `v_t`), if the strategy has state.
    #[serde(default)]
    pub strategy_state: Option<BlobRef>,
    /// The global model after `rounds.completed_rounds`.
    pub model: VersionInfo,
}

/// What a restarted aggregator resumes from.
#[derive(Debug)]
pub struct Resumed {
    /// The record as stored.
    pub record: CheckpointRecord,
    /// The global model it names, verified.
    pub global: GlobalModel,
    /// Strategy checkpoint with its optimiser state restored.
    pub strategy: StrategyCheckpoint,
}

/// The checkpoint layout over any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct Checkpoints {
    store: Arc<dyn ObjectStore>,
    keep_versions: Option<NonZeroU32>,
}

impl Checkpoints {
    /// Uses `store`, keeping every model version.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            keep_versions: None,
        }
    }

    /// Keeps only the `keep` newest model versions (and the best, see
    /// [`super::retention`]); `None` keeps all.
    #[must_use]
    pub fn with_keep_versions(mut self, keep: Option<NonZeroU32>) -> Self {
        self.keep_versions = keep;
        self
    }

    /// How many model versions are kept; `None`: all.
    pub fn keep_versions(&self) -> Option<NonZeroU32> {
        self.keep_versions
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Writes a model version (blob, then its info).
    pub async fn save_version(
        &self,
        global: &GlobalModel,
        info: &VersionInfo,
    ) -> Result<(), StoreError> {
        self.store
            .put(&model_key(global.version), global.bytes.clone())
            .await?;
        self.save_version_info(info).await
    }

    /// Rewrites a version's info (for metrics reported after it was made).
    pub async fn save_version_info(&self, info: &VersionInfo) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(info).map_err(|source| StoreError::Json {
            key: info_key(info.version),
            action: "encoded",
            source,
        })?;
        self.store
            .put(&info_key(info.version), Bytes::from(json))
            .await
    }

    /// Commits a round: the model version, the strategy state, then the
    /// record. Once this returns, a restart resumes after `rounds.completed_rounds`.
    pub async fn commit(
        &self,
        job: &str,
        global: &GlobalModel,
        info: &VersionInfo,
        rounds: RoundCheckpoint,
        mut strategy: StrategyCheckpoint,
    ) -> Result<(), StoreError> {
        self.save_version(global, info).await?;
        let round = rounds.completed_rounds;
        let previous = self.read_record().await.ok().flatten();
        let optimizer = strategy.optimizer.take();
        let optimizer_last_round = optimizer.as_ref().and_then(|o| o.last_round);
        let strategy_state = match optimizer.map(encode_state).transpose()? {
            Some(Some(bytes)) => {
                let key = state_key(round);
                let blob = BlobRef {
                    key: key.clone(),
                    sha256: sha256_hex(&bytes),
                    size: bytes.len() as u64,
                };
                self.store.put(&key, bytes).await?;
                Some(blob)
            }
            _ => None,
        };
        let record = CheckpointRecord {
            format: FORMAT,
            job: job.to_string(),
            rounds,
            strategy,
            optimizer_last_round,
            strategy_state,
            model: info.clone(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|source| StoreError::Json {
            key: CHECKPOINT_KEY.into(),
            action: "encoded",
            source,
        })?;
        self.store.put(CHECKPOINT_KEY, Bytes::from(json)).await?;
        // The previous round's state blob is unreachable now; losing this
        // delete only leaves garbage behind.
        if let Some(old) = previous.and_then(|p| p.strategy_state)
            && Some(&old.key) != record.strategy_state.as_ref().map(|b| &b.key)
        {
            let _ = self.store.delete(&old.key).await;
        }
        Ok(())
    }

    async fn read_record(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        let Some(bytes) = self.store.get(CHECKPOINT_KEY).await? else {
            return Ok(None);
        };
        let record: CheckpointRecord =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                key: CHECKPOINT_KEY.into(),
                action: "decoded",
                source,
            })?;
        if record.format != FORMAT {
            return Err(StoreError::Corrupt {
                key: CHECKPOINT_KEY.into(),
                detail: format!(
                    "format {} is not supported (expected {FORMAT})",
                    record.format
                ),
            });
        }
        Ok(Some(record))
    }

    async fn read_blob(&self, key: &str, sha256: &str, size: u64) -> Result<Bytes, StoreError> {
        let bytes = self
            .store
            .get(key)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                key: key.into(),
                detail: "named by checkpoint.json but missing".into(),
            })?;
        if bytes.len() as u64 != size || sha256_hex(&bytes) != sha256 {
            return Err(StoreError::Corrupt {
                key: key.into(),
                detail: format!(
                    "expected {size} bytes with sha256 {sha256}, found {} bytes with sha256 {}",
                    bytes.len(),
                    sha256_hex(&bytes)
                ),
            });
        }
        Ok(bytes)
    }

    /// Loads the last committed round, verifying every blob; `None` for an
    /// empty store.
    pub async fn load(&self) -> Result<Option<Resumed>, StoreError> {
        let Some(record) = self.read_record().await? else {
            return Ok(None);
        };
        let key = model_key(record.model.version);
        let bytes = self
            .read_blob(&key, &record.model.sha256, record.model.size)
            .await?;
        let global = GlobalModel::from_bytes(record.model.version, bytes)
            .map_err(|source| StoreError::InvalidModel { key, source })?;
        let mut strategy = record.strategy.clone();
        if let Some(blob) = &record.strategy_state {
            let bytes = self.read_blob(&blob.key, &blob.sha256, blob.size).await?;
            strategy.optimizer = Some(decode_state(
                &blob.key,
                &bytes,
                record.optimizer_last_round,
            )?);
        } else if matches!(
            record.strategy.config,
            crate::StrategyConfig::FedAdagrad(_)
                | crate::StrategyConfig::FedAdam(_)
                | crate::StrategyConfig::FedYogi(_)
        ) {
            // FedOpt before its first round has no moments yet.
            strategy.optimizer = Some(FedOptState {
                last_round: record.optimizer_last_round,
                m_t: None,
                v_t: None,
            });
        }
        Ok(Some(Resumed {
            record,
            global,
            strategy,
        }))
    }

    /// Every stored version's info, by version.
    pub async fn list_versions(&self) -> Result<Vec<VersionInfo>, StoreError> {
        let mut out = Vec::new();
        for key in self.store.list("models/").await? {
            if !key.ends_with(".json") {
                continue;
            }
            let Some(bytes) = self.store.get(&key).await? else {
                continue;
            };
            let info: VersionInfo =
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                    key: key.clone(),
                    action: "decoded",
                    source,
                })?;
            out.push(info);
        }
        out.sort_by_key(|i| i.version);
        Ok(out)
    }

    /// The safetensors bytes of a version, if stored.
    pub async fn read_model(&self, version: u64) -> Result<Option<Bytes>, StoreError> {
        self.store.get(&model_key(version)).await
    }

    /// Every version with a model or an info object in the store (also one
    /// whose deletion stopped half-way).
    pub async fn stored_versions(&self) -> Result<BTreeSet<u64>, StoreError> {
        let keys = self.store.list("models/").await?;
        Ok(keys.iter().filter_map(|k| version_of_key(k)).collect())
    }

    /// Deletes a version: its info first, which is what lists it (on resume),
    /// then its model. Stopping in between leaves a model without info, which
    /// [`Self::stored_versions`] still finds, so a later call finishes it.
    pub async fn delete_version(&self, version: u64) -> Result<(), StoreError> {
        self.store.delete(&info_key(version)).await?;
        self.store.delete(&model_key(version)).await
    }
}

fn encode_state(state: FedOptState) -> Result<Option<Bytes>, StoreError> {
    let (Some(m), Some(v)) = (state.m_t, state.v_t) else {
        return Ok(None);
    };
    let (nm, nv) = (m.len(), v.len());
    let model = Model::new([
        ("m_t", vec![nm], TensorData::F32(m)),
        ("v_t", vec![nv], TensorData::F32(v)),
    ])
    .and_then(|m| m.to_safetensors())
    .map_err(StoreError::EncodeState)?;
    Ok(Some(Bytes::from(model)))
}

fn decode_state(
    key: &str,
    bytes: &[u8],
    last_round: Option<u64>,
) -> Result<FedOptState, StoreError> {
    let model =
        decode_model(bytes, &trusted_limits()).map_err(|source| StoreError::InvalidModel {
            key: key.into(),
            source,
        })?;
    let take = |name: &str| match model.tensor(name) {
        Some(TensorData::F32(v)) => Ok(v.clone()),
        _ => Err(StoreError::Corrupt {
            key: key.into(),
            detail: format!("optimizer state lacks an F32 tensor {name:?}"),
        }),
    };
    Ok(FedOptState {
        last_round,
        m_t: Some(take("m_t")?),
        v_t: Some(take("v_t")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DirStore;
    use crate::{FedOptConfig, RoundConfig, StrategyConfig};

    fn round_config() -> RoundConfig {
        RoundConfig {
            total_rounds: 5,
            min_per_round: 1,
            max_per_round: 2,
            min_available: 1,
            round_timeout_ms: 1000,
            heartbeat_timeout_ms: 1000,
            max_round_attempts: 2,
            seed: 7,
        }
    }

    #[test]
    fn version_keys_round_trip_and_nothing_else_is_a_version() {
        for v in [0, 7, 99_999_999, 123_456_789_012] {
            assert_eq!(version_of_key(&model_key(v)), Some(v));
            assert_eq!(version_of_key(&info_key(v)), Some(v));
        }
        for other in [
            "models/v3.json",
            "models/v00000003.safetensors.tmp-1-2",
            "models/v00000003.txt",
            "models/vx0000003.json",
            "models/v.json",
            "state/r00000003.safetensors",
            "checkpoint.json",
            "models/initial.safetensors",
        ] {
            assert_eq!(version_of_key(other), None, "{other}");
        }
    }

    #[tokio::test]
    async fn deleting_a_version_removes_its_info_and_model_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ck = Checkpoints::new(Arc::new(DirStore::new(tmp.path())));
        for version in 0..3 {
            let model =
                Model::new([("w", vec![1], TensorData::F32(vec![version as f32]))]).expect("model");
            let global = GlobalModel::new(version, model).expect("encode");
            let info = global.info(BTreeMap::new(), vec![]);
            ck.save_version(&global, &info).await.expect("save");
        }
        ck.store()
            .put("models/notes.txt", Bytes::from_static(b"kept"))
            .await
            .expect("put");
        assert_eq!(
            ck.stored_versions().await.expect("list"),
            BTreeSet::from([0, 1, 2])
        );
        ck.delete_version(1).await.expect("delete");
        ck.delete_version(1).await.expect("deleting twice is fine");
        assert_eq!(
            ck.stored_versions().await.expect("list"),
            BTreeSet::from([0, 2])
        );
        let listed: Vec<u64> = ck
            .list_versions()
            .await
            .expect("infos")
            .iter()
            .map(|i| i.version)
            .collect();
        assert_eq!(listed, [0, 2]);
        assert!(ck.read_model(1).await.expect("read").is_none());
        // A half-deleted version (model left, info gone) is still found.
        ck.store().delete(&info_key(2)).await.expect("delete info");
        assert_eq!(
            ck.stored_versions().await.expect("list"),
            BTreeSet::from([0, 2])
        );
        assert!(
            ck.store()
                .get("models/notes.txt")
                .await
                .expect("get")
                .is_some()
        );
    }

    #[tokio::test]
    async fn commit_and_load_round_trip_bit_exact_state() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ck = Checkpoints::new(Arc::new(DirStore::new(tmp.path())));
        assert!(ck.load().await.expect("empty store").is_none());

        let model =
            Model::new([("w", vec![3], TensorData::F32(vec![1.0, 2.0, 3.0]))]).expect("model");
        let global = GlobalModel::new(2, model).expect("encode");
        let info = global.info(BTreeMap::from([("train_loss".into(), 0.5)]), vec![]);
        // Values whose shortest decimal forms would not survive a JSON trip
        // through f64 are kept exact by the safetensors blob.
        let m = vec![f32::from_bits(0x3DCC_CCCD), -1e-38, 7.0];
        let v = vec![f32::MIN_POSITIVE, 3.0e38, 0.1];
        let strategy = StrategyCheckpoint {
            config: StrategyConfig::FedAdam(FedOptConfig::adam_default()),
            optimizer: Some(FedOptState {
                last_round: Some(2),
                m_t: Some(m.clone()),
                v_t: Some(v.clone()),
            }),
        };
        let rounds = RoundCheckpoint {
            config: round_config(),
            completed_rounds: 2,
            participants: vec!["a".into()],
        };
        ck.commit("job", &global, &info, rounds.clone(), strategy.clone())
            .await
            .expect("commit");
        let resumed = ck.load().await.expect("load").expect("present");
        assert_eq!(resumed.record.rounds, rounds);
        assert_eq!(resumed.strategy, strategy);
        assert_eq!(resumed.global.bytes, global.bytes);
        assert_eq!(ck.list_versions().await.expect("list"), vec![info]);

        // A flipped byte in the model is caught by its hash.
        let key = model_key(2);
        let mut bad = ck
            .store()
            .get(&key)
            .await
            .expect("get")
            .expect("model")
            .to_vec();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        ck.store().put(&key, Bytes::from(bad)).await.expect("put");
        assert!(matches!(ck.load().await, Err(StoreError::Corrupt { .. })));
    }
}
