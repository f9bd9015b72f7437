output "cluster_name" {
  description = "Name of the Magnum cluster (and of the MemberCluster)."
  value       = openstack_containerinfra_cluster_v1.this.name
}

output "cluster_id" {
  description = "Magnum cluster UUID."
  value       = openstack_containerinfra_cluster_v1.this.id
}

output "endpoint" {
  description = "HTTPS URL of the cluster's API server."
  value       = nonsensitive(local.kube["host"])
}

output "cluster_ca_certificate" {
  description = "PEM CA certificate of the API server (for the caller's kubernetes provider)."
  value       = nonsensitive(local.kube["cluster_ca_certificate"])
}

output "admin_client_certificate" {
  description = "PEM admin client certificate Magnum signed (for the caller's kubernetes provider)."
  value       = local.kube["client_certificate"]
  sensitive   = true
}

output "admin_client_key" {
  description = "PEM key of admin_client_certificate."
  value       = local.kube["client_key"]
  sensitive   = true
}

output "kubeconfig" {
  description = "Kubeconfig for fedsky's ServiceAccount in the cluster (static token)."
  value       = module.fedsky.kubeconfig
  sensitive   = true
}

output "member_cluster_manifest" {
  description = "MemberCluster manifest (YAML) for the fedsky hub: provider openstack, this region and tier."
  value       = module.fedsky.member_cluster_manifest
}

output "kubeconfig_secret_manifest" {
  description = "Secret manifest (YAML) holding the kubeconfig, for the fedsky hub."
  value       = module.fedsky.kubeconfig_secret_manifest
  sensitive   = true
}

output "manifests" {
  description = "Secret and MemberCluster as one YAML stream: tofu output -raw manifests | kubectl apply -f -"
  value       = module.fedsky.manifests
  sensitive   = true
}

output "aggregator_pod_monitor_manifest" {
  description = "PodMonitor (YAML) scraping this cluster's fedsky aggregators, for kubectl apply where aggregator_pod_monitor.enabled is false."
  value       = module.fedsky.aggregator_pod_monitor_manifest
}
