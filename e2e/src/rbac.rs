//! The operator as the chart installs it, for tests: its ServiceAccount and roles rendered
//! by `helm template` from `charts/fedsky` and applied to a hub, a client that acts as that
//! ServiceAccount, and the proof, from the hub's audit log, that the roles grant exactly
//! what the operator did: nothing it asked for was refused, and every rule was the only
//! one allowing some request it made (so removing any rule breaks it).

use crate::audit::AuditEvent;
use crate::control_plane::ControlPlane;
use crate::error::{Error, io};
use crate::helm::helm;
use crate::kubectl::kubectl;
use serde::Deserialize;
use std::fmt;

/// The release name and namespace the tests install the operator's identity as.
pub const RELEASE: &str = "fedsky";
/// The operator's namespace.
pub const NAMESPACE: &str = "fedsky-system";

/// The user name of the chart's ServiceAccount (release `fedsky` in `fedsky-system`).
pub fn operator_user() -> String {
    format!("system:serviceaccount:{NAMESPACE}:{RELEASE}")
}

/// The chart's ServiceAccount, ClusterRole(s) and Role(s) with their bindings, as
/// `helm template` renders them with `rbac.secretNamespaces` set to `secret_namespaces`.
pub fn render(secret_namespaces: &[&str]) -> Result<String, Error> {
    let root = crate::repo_root();
    let set = format!("rbac.secretNamespaces={{{}}}", secret_namespaces.join(","));
    let mut args = vec![
        "template",
        RELEASE,
        "charts/fedsky",
        "--namespace",
        NAMESPACE,
        "--kube-version",
        crate::helm::OFFLINE_KUBE_VERSION,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/clusterrole.yaml",
        "--show-only",
        "templates/role.yaml",
    ];
    if !secret_namespaces.is_empty() {
        args.extend(["--set", set.as_str()]);
    }
    let out = helm(None, &root, &args)?;
    if !out.success {
        return Err(Error::Command {
            what: "helm template (operator RBAC)".into(),
            stderr: out.stderr,
        });
    }
    Ok(out.stdout)
}

/// Applies the rendered identity to `plane` (creating the namespaces it needs) and returns
/// the rendered YAML.
pub fn install(plane: &ControlPlane, secret_namespaces: &[&str]) -> Result<String, Error> {
    let yaml = render(secret_namespaces)?;
    for ns in std::iter::once(&NAMESPACE).chain(secret_namespaces) {
        let exists = kubectl(plane.kubeconfig_path(), &["get", "namespace", ns])?;
        if !exists.success {
            let out = kubectl(plane.kubeconfig_path(), &["create", "namespace", ns])?;
            // A parallel creator is fine.
            if !out.success && !out.stderr.contains("AlreadyExists") {
                return Err(Error::Command {
                    what: format!("kubectl create namespace {ns}"),
                    stderr: out.stderr,
                });
            }
        }
    }
    let file = plane.run_dir().join("operator-rbac.yaml");
    std::fs::write(&file, &yaml).map_err(io("write", &file))?;
    let path = file.display().to_string();
    let out = kubectl(plane.kubeconfig_path(), &["apply", "-f", &path])?;
    if !out.success {
        return Err(Error::Command {
            what: "kubectl apply (operator RBAC)".into(),
            stderr: out.stderr,
        });
    }
    Ok(yaml)
}

/// A client of `plane` that acts as the chart's ServiceAccount (impersonation by the
/// admin), so every request is judged by the rendered roles alone.
pub async fn operator_client(plane: &ControlPlane) -> Result<kube::Client, Error> {
    let mut config = plane.config().await?;
    config.auth_info.impersonate = Some(operator_user());
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{NAMESPACE}"),
        "system:authenticated".into(),
    ]);
    kube::Client::try_from(config).map_err(Error::Kube)
}

/// One rule of a rendered role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `ClusterRole/<name>` or `Role/<namespace>/<name>`.
    pub role: String,
    /// The namespace a Role's rule applies in; `None` for a ClusterRole's.
    pub namespace: Option<String>,
    /// API groups.
    pub api_groups: Vec<String>,
    /// Resources, `resource/subresource` for subresources.
    pub resources: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: groups {:?} resources {:?} verbs {:?}",
            self.role, self.api_groups, self.resources, self.verbs
        )
    }
}

impl Rule {
    /// Whether this rule allows `(group, resource, verb)` in `namespace` (`None`: a
    /// cluster-wide request).
    pub fn allows(&self, group: &str, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
        let scope = match (&self.namespace, namespace) {
            (None, _) => true,
            (Some(mine), Some(asked)) => mine == asked,
            (Some(_), None) => false,
        };
        scope
            && self.api_groups.iter().any(|g| g == group)
            && self.resources.iter().any(|r| r == resource)
            && self.verbs.iter().any(|v| v == verb)
    }

    /// Each `(group, resource, verb)` the rule grants.
    pub fn grants(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.api_groups.iter().flat_map(move |g| {
            self.resources.iter().flat_map(move |r| {
                self.verbs
                    .iter()
                    .map(move |v| (g.as_str(), r.as_str(), v.as_str()))
            })
        })
    }
}

#[derive(Deserialize)]
struct Doc {
    kind: String,
    metadata: Meta,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
}

/// The rules of every ClusterRole and Role in a rendered multi-document YAML.
pub fn rules(yaml: &str) -> Result<Vec<Rule>, Error> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| Error::Command {
            what: "reading rendered RBAC".into(),
            stderr: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let d: Doc = serde_yaml::from_value(value).map_err(|e| Error::Command {
            what: "reading rendered RBAC".into(),
            stderr: e.to_string(),
        })?;
        let (role, namespace) = match d.kind.as_str() {
            "ClusterRole" => (format!("ClusterRole/{}", d.metadata.name), None),
            "Role" => {
                let ns = d.metadata.namespace.unwrap_or_default();
                (format!("Role/{ns}/{}", d.metadata.name), Some(ns))
            }
            _ => continue,
        };
        for r in d.rules {
            out.push(Rule {
                role: role.clone(),
                namespace: namespace.clone(),
                api_groups: r.api_groups,
                resources: r.resources,
                verbs: r.verbs,
            });
        }
    }
    Ok(out)
}

/// Where rendered roles and the requests a user made disagree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Requests refused (403): a missing grant.
    pub refused: Vec<String>,
    /// `(rule, group, resource, verb)` granted but never the only grant of an allowed
    /// request: an excess grant (or a whole rule that removing would not break).
    pub unused: Vec<String>,
}

impl Verdict {
    /// Nothing refused, nothing granted in excess.
    pub fn is_exact(&self) -> bool {
        self.refused.is_empty() && self.unused.is_empty()
    }
}

/// Compares `rules` with what `user` did in `events`. A grant counts as used when some
/// allowed request of the user matched it and no grant of another rule: then removing the
/// rule would refuse that request. `exempt` lists `(group, resource, verb)` grants not to
/// judge here: those no request names because admission checks them (for example
/// `<resource>/finalizers` update, which `OwnerReferencesPermissionEnforcement` demands of
/// whoever sets `blockOwnerDeletion`), and those another audited test needs.
pub fn judge(
    rules: &[Rule],
    events: &[AuditEvent],
    user: &str,
    exempt: &[(&str, &str, &str)],
) -> Verdict {
    let mine: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.acting_user() == user && e.object_ref.is_some())
        .collect();
    let refused = mine
        .iter()
        .filter(|e| e.code() == 403)
        .map(ToString::to_string)
        .collect();
    let mut unused = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        for (g, r, v) in rule.grants() {
            if exempt.contains(&(g, r, v)) {
                continue;
            }
            let needed = mine.iter().any(|e| {
                e.code() != 403
                    && e.group() == g
                    && e.resource() == r
                    && e.verb == v
                    && rule.allows(g, r, v, e.namespace())
                    && !rules
                        .iter()
                        .enumerate()
                        .any(|(j, other)| j != i && other.allows(g, r, v, e.namespace()))
            });
            if !needed {
                unused.push(format!("{rule} — {v} {g}/{r}"));
            }
        }
    }
    Verdict { refused, unused }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &str = "
apiVersion: v1
kind: ServiceAccount
metadata: { name: fedsky, namespace: fedsky-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: fedsky }
rules:
  - apiGroups: [fl.fedsky.dev]
    resources: [federatedjobs]
    verbs: [get, list]
  - apiGroups: [fl.fedsky.dev]
    resources: [federatedjobs/finalizers]
    verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: fedsky-secrets, namespace: fedsky-system }
rules:
  - apiGroups: ['']
    resources: [secrets]
    verbs: [get]
";

    fn event(verb: &str, group: &str, resource: &str, ns: Option<&str>, code: u16) -> AuditEvent {
        AuditEvent {
            verb: verb.into(),
            user: crate::audit::User {
                username: "admin".into(),
            },
            impersonated_user: Some(crate::audit::User {
                username: "sa".into(),
            }),
            object_ref: Some(crate::audit::ObjectRef {
                resource: resource.into(),
                api_group: Some(group.into()),
                namespace: ns.map(str::to_string),
                ..Default::default()
            }),
            response_status: Some(crate::audit::ResponseStatus { code }),
            request_uri: format!("/{resource}"),
        }
    }

    #[test]
    fn rules_come_from_cluster_roles_and_roles_only() {
        let r = rules(ROLES).expect("rules");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].role, "ClusterRole/fedsky");
        assert_eq!(r[2].namespace.as_deref(), Some("fedsky-system"));
        assert!(r[2].allows("", "secrets", "get", Some("fedsky-system")));
        assert!(!r[2].allows("", "secrets", "get", Some("default")));
        assert!(!r[2].allows("", "secrets", "get", None));
        assert!(r[0].allows("fl.fedsky.dev", "federatedjobs", "list", None));
    }

    #[test]
    fn exact_when_every_grant_is_the_only_one_for_some_allowed_request() {
        let r = rules(ROLES).expect("rules");
        let fin = [("fl.fedsky.dev", "federatedjobs/finalizers", "update")];
        let events = vec![
            event("get", "fl.fedsky.dev", "federatedjobs", Some("a"), 200),
            event("list", "fl.fedsky.dev", "federatedjobs", None, 200),
            event("get", "", "secrets", Some("fedsky-system"), 404),
        ];
        let v = judge(&r, &events, "sa", &fin);
        assert!(v.is_exact(), "{v:?}");
        // Someone else's requests prove nothing.
        let v = judge(&r, &events, "other", &fin);
        assert_eq!(v.unused.len(), 3, "{v:?}");
    }

    #[test]
    fn a_refusal_or_an_excess_grant_is_reported() {
        let r = rules(ROLES).expect("rules");
        let fin = [("fl.fedsky.dev", "federatedjobs/finalizers", "update")];
        let events = vec![
            event("get", "fl.fedsky.dev", "federatedjobs", Some("a"), 200),
            event("get", "", "secrets", Some("default"), 403),
        ];
        let v = judge(&r, &events, "sa", &fin);
        assert_eq!(v.refused.len(), 1, "{v:?}");
        assert_eq!(v.unused.len(), 2, "list and secrets get unused: {v:?}");
        assert!(v.unused.iter().any(|u| u.contains("list")), "{v:?}");
    }

    #[test]
    fn a_grant_shadowed_by_another_rule_is_not_needed() {
        let mut r = rules(ROLES).expect("rules");
        let mut wide = r[2].clone();
        wide.role = "ClusterRole/wide".into();
        wide.namespace = None;
        r.push(wide);
        let events = vec![event("get", "", "secrets", Some("fedsky-system"), 200)];
        let v = judge(&r, &events, "sa", &[]);
        assert!(
            v.unused.iter().filter(|u| u.contains("secrets")).count() == 2,
            "both secrets rules are redundant with each other: {v:?}"
        );
    }
}
