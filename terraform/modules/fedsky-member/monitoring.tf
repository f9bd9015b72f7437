# A prometheus-operator PodMonitor for the aggregators fedsky runs in this cluster: pods
# labelled fl.fedsky.dev/role=aggregator in namespace fedsky-aggregators (the operator's
# names.rs), whose container port "http" (8081) serves /metrics next to the model
# manager. Each target gets the labels the fedsky Grafana dashboard selects aggregators
# by: federatedjob_namespace and federatedjob, from the pod's annotation
# fl.fedsky.dev/job-ref (<namespace>/<name>), and member_cluster (this module's name).
# operator/tests/dashboard_metrics reads the targetLabel lines below: keep one per line.
#
# That port serves TLS only and admits a client certificate from the job's CA, the job's
# token, or, on /metrics alone, this cluster's scrape token: the Secret
# fedsky-metrics-token (key "token") below. The operator mounts it into every aggregator
# pod it runs here (optional: a cluster without it still runs jobs) and passes it as
# --metrics-token-file; the PodMonitor sends it as a bearer token.
#
# Created only with aggregator_pod_monitor.enabled, since kubernetes_manifest needs the
# PodMonitor CRD in the cluster already at plan time; the manifest is an output either way,
# and the token Secrets are created either way (the manifest needs them).

locals {
  aggregator_pod_monitor = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PodMonitor"
    metadata = {
      name      = "fedsky-aggregators"
      namespace = local.pod_monitor_namespace
      labels    = merge(local.labels, var.aggregator_pod_monitor.labels)
    }
    spec = {
      namespaceSelector = { matchNames = [local.aggregator_namespace] }
      selector          = { matchLabels = { "fl.fedsky.dev/role" = "aggregator" } }
      podMetricsEndpoints = [merge(
        {
          port     = "http"
          path     = "/metrics"
          scheme   = "https"
          interval = var.aggregator_pod_monitor.interval
          authorization = {
            type        = "Bearer"
            credentials = { name = local.metrics_token_secret, key = "token" }
          }
          # No CA to verify against: every job has its own CA, issued by the operator when
          # the job is created, and a PodMonitor written once per cluster cannot know them.
          # What skipping verification costs is bounded: a scrape reveals this cluster's
          # scrape token, which opens /metrics of this cluster's aggregators and nothing
          # else (never models, status or the data plane).
          tlsConfig = { insecureSkipVerify = true }
          relabelings = [
            {
              action       = "replace"
              sourceLabels = ["__meta_kubernetes_pod_annotation_fl_fedsky_dev_job_ref"]
              regex        = "([^/]+)/(.+)"
              replacement  = "$1"
              targetLabel  = "federatedjob_namespace"
            },
            {
              action       = "replace"
              sourceLabels = ["__meta_kubernetes_pod_annotation_fl_fedsky_dev_job_ref"]
              regex        = "([^/]+)/(.+)"
              replacement  = "$2"
              targetLabel  = "federatedjob"
            },
            {
              action      = "replace"
              replacement = var.name
              targetLabel = "member_cluster"
            },
          ]
        },
        var.aggregator_pod_monitor.tls_config == null ? {} : { tlsConfig = var.aggregator_pod_monitor.tls_config },
      )]
    }
  }

  metrics_token_secret  = "fedsky-metrics-token"
  aggregator_namespace  = "fedsky-aggregators"
  pod_monitor_namespace = coalesce(var.aggregator_pod_monitor.namespace, var.member_namespace)
  # Where the token must be: next to the aggregators, which mount it, and next to the
  # PodMonitor, whose authorization can only name a Secret in its own namespace (one
  # Secret where the two are the same). Plain strings, so for_each is known at plan time.
  metrics_token_namespaces = toset([local.aggregator_namespace, local.pod_monitor_namespace])
}

# The namespace the operator runs aggregators in (it creates it too, when it first places
# one here). Made here so that the token Secret can exist before the first aggregator; the
# operator labels it as well, which this module leaves alone.
resource "kubernetes_namespace_v1" "aggregators" {
  metadata {
    name   = local.aggregator_namespace
    labels = { "app.kubernetes.io/part-of" = "fedsky" }
  }

  lifecycle {
    ignore_changes = [metadata[0].labels, metadata[0].annotations]
  }
}

# The scrape token: a UUID (122 bits from the OS's secure random source) generated once;
# ignore_changes keeps the first value, since uuid() returns a new one at every plan. It
# needs no provider besides the built-in one. Replace it with
# `tofu apply -replace=terraform_data.metrics_token`; running aggregators read it at start.
resource "terraform_data" "metrics_token" {
  input = sensitive(uuid())

  lifecycle {
    ignore_changes = [input]
  }
}

resource "kubernetes_secret_v1" "metrics_token" {
  for_each = local.metrics_token_namespaces

  metadata {
    name      = local.metrics_token_secret
    namespace = each.value
    labels    = local.labels
  }
  type = "Opaque"
  # binary_data (base64) rather than data: the Secret's key is the same either way, and the
  # tests of this and the wrapping modules mock `data` of every kubernetes_secret_v1 (the
  # ServiceAccount token Secret's is filled in by the cluster).
  binary_data = { token = base64encode(terraform_data.metrics_token.output) }

  depends_on = [kubernetes_namespace_v1.aggregators, kubernetes_namespace_v1.fedsky]
}

resource "kubernetes_manifest" "aggregator_pod_monitor" {
  count    = var.aggregator_pod_monitor.enabled ? 1 : 0
  manifest = local.aggregator_pod_monitor
}
