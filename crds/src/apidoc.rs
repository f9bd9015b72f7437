//! Renders the API reference (`docs/api-reference.md`) from the CRDs' OpenAPI schemas, so
//! the documentation is exactly what the API server enforces.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use std::fmt::Write;

/// Markdown for all CRDs.
pub fn render(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::from(
        "# fedsky API reference\n\n\
         Generated from the CRD schemas by `make generate` (`crds/src/bin/apidoc.rs`); do not edit.\n\
         Group `fl.fedsky.dev`, version `v1alpha1`. `kubectl explain <kind>.<field>` shows the same text.\n\n",
    );
    for crd in crds {
        let names = &crd.spec.names;
        let _ = writeln!(out, "- [{}](#{})", names.kind, names.kind.to_lowercase());
    }
    out.push('\n');
    for crd in crds {
        render_crd(&mut out, crd);
    }
    out
}

fn render_crd(out: &mut String, crd: &CustomResourceDefinition) {
    let names = &crd.spec.names;
    let _ = writeln!(out, "## {}\n", names.kind);
    let short = names.short_names.as_deref().unwrap_or_default().join(", ");
    let _ = writeln!(
        out,
        "Scope: {} · plural `{}` · short names `{}` · categories `{}`\n",
        crd.spec.scope,
        names.plural,
        short,
        names.categories.as_deref().unwrap_or_default().join(", ")
    );
    let Some(version) = crd.spec.versions.first() else {
        return;
    };
    let Some(schema) = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    else {
        return;
    };
    if let Some(desc) = &schema.description {
        let _ = writeln!(out, "{desc}\n");
    }
    if let Some(cols) = &version.additional_printer_columns {
        let list: Vec<String> = cols.iter().map(|c| format!("`{}`", c.name)).collect();
        let _ = writeln!(out, "Printer columns: {}\n", list.join(", "));
    }
    let props = schema.properties.as_ref();
    for part in ["spec", "status"] {
        if let Some(p) = props.and_then(|p| p.get(part)) {
            let _ = writeln!(out, "### {}.{part}\n", names.kind);
            let _ = writeln!(
                out,
                "| field | type | required | description | validation |\n|---|---|---|---|---|"
            );
            render_props(out, part, p);
            out.push('\n');
        }
    }
}

fn render_props(out: &mut String, path: &str, schema: &JSONSchemaProps) {
    let required = schema.required.clone().unwrap_or_default();
    let children = schema
        .properties
        .as_ref()
        .map(|p| p.iter().collect::<Vec<_>>())
        .or_else(|| {
            schema
                .items
                .as_ref()
                .and_then(|i| match i {
                    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s) => {
                        s.properties.as_ref().map(|p| p.iter().collect())
                    }
                    _ => None,
                })
        })
        .unwrap_or_default();
    let item_required = match &schema.items {
        Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s)) => {
            s.required.clone().unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let is_list = schema.type_.as_deref() == Some("array");
    for (name, child) in children {
        let child_path = if is_list {
            format!("{path}[].{name}")
        } else {
            format!("{path}.{name}")
        };
        let req = if is_list {
            item_required.contains(name)
        } else {
            required.contains(name)
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            child_path,
            type_of(child),
            if req { "yes" } else { "" },
            cell(child.description.as_deref().unwrap_or("")),
            cell(&validation(child))
        );
        render_props(out, &child_path, child);
    }
}

fn type_of(s: &JSONSchemaProps) -> String {
    if s.x_kubernetes_int_or_string == Some(true) {
        return "quantity".into();
    }
    match s.type_.as_deref() {
        Some("array") => "list".into(),
        Some("object") if s.properties.is_none() => "map".into(),
        Some(t) => t.to_string(),
        None => "any".into(),
    }
}

fn validation(s: &JSONSchemaProps) -> String {
    let mut v = Vec::new();
    if let Some(e) = &s.enum_ {
        let vals: Vec<String> = e
            .iter()
            .map(|x| format!("`{}`", x.0.as_str().unwrap_or_default()))
            .collect();
        v.push(format!("one of {}", vals.join(", ")));
    }
    if let Some(m) = s.minimum {
        v.push(format!(">= {m}"));
    }
    if let Some(m) = s.maximum {
        v.push(format!("<= {m}"));
    }
    if let Some(m) = s.min_length {
        v.push(format!("length >= {m}"));
    }
    if let Some(m) = s.max_length {
        v.push(format!("length <= {m}"));
    }
    if let Some(m) = s.min_items {
        v.push(format!("items >= {m}"));
    }
    if let Some(m) = s.max_items {
        v.push(format!("items <= {m}"));
    }
    if let Some(p) = &s.pattern {
        v.push(format!("pattern `{p}`"));
    }
    if let Some(d) = &s.default {
        v.push(format!("default `{}`", d.0));
    }
    if let Some(keys) = &s.x_kubernetes_list_map_keys {
        v.push(format!("unique by `{}`", keys.join(", ")));
    }
    for rule in s.x_kubernetes_validations.as_deref().unwrap_or_default() {
        let msg = rule.message.as_deref().unwrap_or(&rule.rule);
        v.push(format!("rule: {msg}"));
    }
    v.join("; ")
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reference_covers_every_kind_and_rule() {
        let md = super::render(&crate::crds());
        for text in [
            "## FederatedJob",
            "## AggregatorPlacement",
            "## ParticipantPool",
            "## MemberCluster",
            "`spec.training.rounds`",
            "`spec.sites[].name`",
            "rule: spec.participants.minPerRound must be less than or equal to spec.participants.maxPerRound",
            "one of `aws`, `gcp`, `openstack`",
        ] {
            assert!(md.contains(text), "reference lacks {text:?}");
        }
    }
}
