# A prometheus-operator PodMonitor for the aggregators fedsky runs in this cluster: pods
# labelled fl.fedsky.dev/role=aggregator in namespace fedsky-aggregators (the operator's
# names.rs), whose container port "http" (8081) serves /metrics next to the model
# manager. Each target gets the labels the fedsky Grafana dashboard selects aggregators
# by: federatedjob_namespace and federatedjob, from the pod's annotation
# fl.fedsky.dev/job-ref (<namespace>/<name>), and member_cluster (this module's name).
# operator/tests/dashboard_metrics reads the targetLabel lines below: keep one per line.
#
# Created only with aggregator_pod_monitor.enabled, since kubernetes_manifest needs the
# PodMonitor CRD in the cluster already at plan time; the manifest is an output either way.

locals {
  aggregator_pod_monitor = {
    apiVersion = "monitoring.coreos.com/v1"
    kind       = "PodMonitor"
    metadata = {
      name      = "fedsky-aggregators"
      namespace = coalesce(var.aggregator_pod_monitor.namespace, kubernetes_namespace_v1.fedsky.metadata[0].name)
      labels    = merge(local.labels, var.aggregator_pod_monitor.labels)
    }
    spec = {
      namespaceSelector = { matchNames = ["fedsky-aggregators"] }
      selector          = { matchLabels = { "fl.fedsky.dev/role" = "aggregator" } }
      podMetricsEndpoints = [merge(
        {
          port     = "http"
          path     = "/metrics"
          scheme   = var.aggregator_pod_monitor.scheme
          interval = var.aggregator_pod_monitor.interval
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
}

resource "kubernetes_manifest" "aggregator_pod_monitor" {
  count    = var.aggregator_pod_monitor.enabled ? 1 : 0
  manifest = local.aggregator_pod_monitor
}
