output "member_clusters" {
  description = "MemberCluster names with their provider endpoints."
  value       = { for k, m in local.members : k => m.endpoint }
}

output "manifest_dir" {
  description = "Where the hub manifests were written: kubectl apply -f this directory."
  value       = "${path.module}/${var.output_dir}"
}
