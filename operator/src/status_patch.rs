//! The one status write every controller makes: the whole status, with forced server-side
//! apply, so fedsky's field manager owns it and a stale writer cannot leave fields behind.

use crate::FIELD_MANAGER;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Writes `status` as the status of `obj` through `api`, which is scoped as `obj` is (its
/// namespace for a namespaced kind). `apiVersion` and `kind` come from `K`.
pub async fn patch_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body::<K, S>(status)),
    )
    .await?;
    Ok(())
}

/// The apply body: `apiVersion`, `kind` and `status`.
fn body<K, S>(status: &S) -> serde_json::Value
where
    K: Resource<DynamicType = ()>,
    S: Serialize,
{
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsky_crds::member_cluster::MemberClusterStatus;
    use fedsky_crds::participant_pool::ParticipantPoolStatus;
    use fedsky_crds::{
        AggregatorPlacement, AggregatorPlacementStatus, FederatedJob, MemberCluster,
        ParticipantPool,
    };

    #[test]
    fn the_body_names_each_kind_as_the_hand_written_ones_did() {
        let head = |v: serde_json::Value| {
            (
                v["apiVersion"].as_str().map(String::from),
                v["kind"].as_str().map(String::from),
                v.get("status").is_some(),
            )
        };
        let expect = |kind: &str| {
            (
                Some("fl.fedsky.dev/v1alpha1".into()),
                Some(kind.into()),
                true,
            )
        };
        assert_eq!(
            head(body::<ParticipantPool, _>(&ParticipantPoolStatus::default())),
            expect("ParticipantPool")
        );
        assert_eq!(
            head(body::<MemberCluster, _>(&MemberClusterStatus::default())),
            expect("MemberCluster")
        );
        assert_eq!(
            head(body::<AggregatorPlacement, _>(
                &AggregatorPlacementStatus::default()
            )),
            expect("AggregatorPlacement")
        );
        assert_eq!(
            head(body::<FederatedJob, _>(
                &fedsky_crds::federated_job::FederatedJobStatus::default()
            )),
            expect("FederatedJob")
        );
    }
}
