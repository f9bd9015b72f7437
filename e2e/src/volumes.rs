//! Static `local` PersistentVolumes on real nodes: what a cluster's storage class would
//! provision, made ahead of time. The kubelet applies a pod's `fsGroup` to `local`
//! volumes, as it does to cloud disks, so ownership is tested for real.

use crate::RealNode;
use crate::error::{Error, io};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use std::path::PathBuf;

/// The storage class of the volumes below, the cluster's default (a claim that names
/// none gets it): bound when a pod is scheduled, so the pod lands on the volume's node.
pub const LOCAL_STORAGE_CLASS: &str = "fedsky-local";

/// Creates the storage class (once) and a PersistentVolume `name` of `size` on `node`,
/// backed by a fresh directory in the node's state directory, which is returned.
pub async fn local_volume(
    client: &kube::Client,
    node: &RealNode,
    name: &str,
    size: &str,
) -> Result<PathBuf, Error> {
    let pp = PatchParams::apply("fedsky-e2e").force();
    let class: k8s_openapi::api::storage::v1::StorageClass = from(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": { "name": LOCAL_STORAGE_CLASS, "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true" } },
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain",
    }))?;
    Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone())
        .patch(LOCAL_STORAGE_CLASS, &pp, &Patch::Apply(&class))
        .await?;
    let dir = node.dir().join("volumes").join(name);
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let pv: PersistentVolume = from(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": LOCAL_STORAGE_CLASS,
            "local": { "path": dir.display().to_string() },
            "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [{
                "key": "kubernetes.io/hostname", "operator": "In", "values": [node.name()],
            }] }] } },
        },
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .patch(name, &pp, &Patch::Apply(&pv))
        .await?;
    Ok(dir)
}

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::Kubeconfig(format!("manifest: {e}")))
}

/// Creates a PersistentVolume `name` that every node of the cluster reaches, as an NFS
/// export or a cloud file share would be: a `hostPath` volume on this machine's file
/// system, which all test nodes share, in a fresh directory under `base` (returned). Open
/// to every uid, as a share prepared for the site's workloads is: the kubelet applies no
/// `fsGroup` to host paths. Its claim names `storage_class` (not the default class).
pub async fn shared_volume(
    client: &kube::Client,
    base: &std::path::Path,
    name: &str,
    size: &str,
    storage_class: &str,
) -> Result<PathBuf, Error> {
    use std::os::unix::fs::PermissionsExt;
    let dir = base.join("shared").join(name);
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
        .map_err(io("open up", &dir))?;
    let pv: PersistentVolume = from(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": { "name": name },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": ["ReadWriteMany", "ReadOnlyMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "hostPath": { "path": dir.display().to_string(), "type": "Directory" },
        },
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("fedsky-e2e").force(),
            &Patch::Apply(&pv),
        )
        .await?;
    Ok(dir)
}
