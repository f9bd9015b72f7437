output "kubeconfig" {
  description = "Kubeconfig for fedsky's ServiceAccount in this cluster (static token)."
  value       = local.kubeconfig
  sensitive   = true
}

output "member_cluster_manifest" {
  description = "MemberCluster manifest (YAML) to apply to the fedsky hub."
  value       = yamlencode(local.member_cluster)
}

output "kubeconfig_secret_manifest" {
  description = "Secret manifest (YAML) with the kubeconfig, to apply to the fedsky hub before or with the MemberCluster."
  value       = yamlencode(local.kubeconfig_secret)
  sensitive   = true
}

output "manifests" {
  description = "The Secret and the MemberCluster as one multi-document YAML stream, ready for kubectl apply -f -."
  value       = "${yamlencode(local.kubeconfig_secret)}---\n${yamlencode(local.member_cluster)}"
  sensitive   = true
}

output "service_account" {
  description = "Namespace/name of fedsky's ServiceAccount in the member cluster."
  value       = "${kubernetes_namespace_v1.fedsky.metadata[0].name}/${kubernetes_service_account_v1.fedsky.metadata[0].name}"
}

output "aggregator_pod_monitor_manifest" {
  description = "PodMonitor (YAML) scraping this cluster's fedsky aggregators, for kubectl apply where aggregator_pod_monitor.enabled is false."
  value       = yamlencode(local.aggregator_pod_monitor)
}
