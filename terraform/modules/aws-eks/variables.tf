variable "cluster_name" {
  description = "Name of the EKS cluster; also the MemberCluster name in the fedsky hub, so it must be a DNS label."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS label (1-63 lowercase letters, digits or '-', starting and ending with a letter or digit): EKS and the MemberCluster both accept it."
  }
}

variable "region" {
  description = "AWS region of the cluster, for example eu-central-1. Resources are created there whatever the provider's default region is."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$", var.region))
    error_message = "region must be an AWS region name such as eu-central-1 or us-gov-west-1."
  }
}

variable "tier" {
  description = "fedsky tier: public (fedsky may place aggregators here) or private (participants only)."
  type        = string
  default     = "public"

  validation {
    condition     = contains(["public", "private"], var.tier)
    error_message = "tier must be public or private."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (for example \"1.35\"); null takes EKS's default at creation."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_version == null || can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.35, or be null."
  }
}

variable "subnet_ids" {
  description = "Subnets for the control plane's network interfaces and the nodes, in at least two availability zones. Private subnets with a NAT route are the usual choice."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must list at least two subnet IDs (subnet-...), in two availability zones as EKS requires."
  }
}

variable "endpoint_public_access" {
  description = "Whether the API server has a public endpoint. The fedsky hub must reach the API server: keep it public (limited by public_access_cidrs) unless the hub reaches the VPC privately."
  type        = bool
  default     = true
}

variable "public_access_cidrs" {
  description = "CIDR blocks allowed to reach the public API endpoint; narrow this to the fedsky hub's egress addresses."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = length(var.public_access_cidrs) > 0 && alltrue([for c in var.public_access_cidrs : can(cidrnetmask(c))])
    error_message = "public_access_cidrs must be a non-empty list of IPv4 CIDR blocks."
  }
}

variable "node_instance_type" {
  description = "EC2 instance type of the node group, for example m6i.xlarge (aggregators) or g5.xlarge (GPU participants)."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.node_instance_type))
    error_message = "node_instance_type must be an EC2 instance type such as m6i.large."
  }
}

variable "node_count" {
  description = "Desired number of nodes; the group scales between node_min_count and node_max_count."
  type        = number
  default     = 2

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 100."
  }
}

variable "node_min_count" {
  description = "Lower bound of the node group's size; null means node_count."
  type        = number
  default     = null

  validation {
    condition     = var.node_min_count == null || try(var.node_min_count >= 0 && floor(var.node_min_count) == var.node_min_count, false)
    error_message = "node_min_count must be a whole number >= 0, or null."
  }
}

variable "node_max_count" {
  description = "Upper bound of the node group's size; null means node_count."
  type        = number
  default     = null

  validation {
    condition     = var.node_max_count == null || try(var.node_max_count >= 1 && var.node_max_count <= 1000 && floor(var.node_max_count) == var.node_max_count, false)
    error_message = "node_max_count must be a whole number from 1 to 1000, or null."
  }
}

variable "capacity_type" {
  description = "ON_DEMAND or SPOT capacity for the node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.capacity_type)
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_disk_size_gb" {
  description = "Root volume size of each node in GiB (checkpoints and container images live here)."
  type        = number
  default     = 50

  validation {
    condition     = var.node_disk_size_gb >= 20 && var.node_disk_size_gb <= 16384
    error_message = "node_disk_size_gb must be from 20 to 16384."
  }
}

variable "hub_namespace" {
  description = "Namespace in the fedsky hub for the kubeconfig Secret (and the credentials Secret, if named)."
  type        = string
  default     = "fedsky-system"
}

variable "credentials_secret_name" {
  description = "Secret in hub_namespace with AWS credentials fedsky uses to provision aggregator VMs in this region (MemberCluster spec.credentialsSecretRef); null leaves it out."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every AWS resource this module creates."
  type        = map(string)
  default     = {}
}

variable "aggregator_pod_monitor" {
  description = "PodMonitor for the aggregators fedsky runs in this cluster (HTTPS with the module's scrape token): enabled, namespace, labels, interval, tls_config; see modules/fedsky-member's variable of this name."
  type        = any
  default     = {}
  nullable    = false
}
