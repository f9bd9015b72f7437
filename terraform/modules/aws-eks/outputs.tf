output "cluster_name" {
  description = "Name of the EKS cluster (and of the MemberCluster)."
  value       = aws_eks_cluster.this.name
}

output "endpoint" {
  description = "HTTPS URL of the cluster's API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "PEM CA certificate of the API server (for the caller's kubernetes provider)."
  value       = base64decode(aws_eks_cluster.this.certificate_authority[0].data)
}

output "node_role_arn" {
  description = "IAM role of the nodes."
  value       = aws_iam_role.node.arn
}

output "kubeconfig" {
  description = "Kubeconfig for fedsky's ServiceAccount in the cluster (static token, no aws CLI needed)."
  value       = module.fedsky.kubeconfig
  sensitive   = true
}

output "member_cluster_manifest" {
  description = "MemberCluster manifest (YAML) for the fedsky hub: provider aws, this region and tier."
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
