//! A labelled namespace per test, so tests sharing a control plane never collide.

use crate::error::Error;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};

/// Label carried by every namespace a test creates.
pub const TEST_LABEL: &str = "e2e.fedsky.dev/test";

/// A namespace named after the test with a random suffix. Call [`TestNamespace::delete`]
/// at the end of the test; the control plane's teardown removes leftovers anyway.
#[derive(Clone)]
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    client: kube::Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates `<test>-<suffix>` labelled `e2e.fedsky.dev/test=<test>`.
    pub async fn create(client: &kube::Client, test: &str) -> Result<Self, Error> {
        let base: String = test
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        let base = base.trim_matches('-').to_string();
        let suffix = format!("{:08x}", rand_suffix());
        let name = format!("{base}-{suffix}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { TEST_LABEL: base } }
        }))
        .map_err(|e| Error::Kubeconfig(format!("namespace manifest: {e}")))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        Ok(Self {
            name,
            client: client.clone(),
        })
    }

    /// Deletes the namespace (without waiting for finalization).
    pub async fn delete(self) -> Result<(), Error> {
        Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}
