variable "project" {
  description = "Google Cloud project ID that holds the cluster."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a project ID: 6-30 lowercase letters, digits or '-', starting with a letter."
  }
}

variable "cluster_name" {
  description = "Name of the GKE cluster; also the MemberCluster name in the fedsky hub."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be 1-40 lowercase letters, digits or '-', starting with a letter and not ending with '-' (GKE's rule)."
  }
}

variable "region" {
  description = "Google Cloud region, for example asia-northeast3. The cluster is regional: its control plane and nodes span the region's zones (or node_zones)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region name such as asia-northeast3 or europe-west4."
  }
}

variable "node_zones" {
  description = "Zones of the region to run nodes in; null lets GKE pick the region's default zones. node_count applies per zone."
  type        = list(string)
  default     = null

  validation {
    condition     = var.node_zones == null || try(length(var.node_zones) > 0 && alltrue([for z in var.node_zones : can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", z))]), false)
    error_message = "node_zones must be a non-empty list of zone names such as asia-northeast3-a, or null."
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

variable "network" {
  description = "VPC network of the cluster."
  type        = string
  default     = "default"
}

variable "subnetwork" {
  description = "Subnetwork of the cluster in region; null uses the network's subnetwork for the region (auto-mode networks)."
  type        = string
  default     = null
}

variable "release_channel" {
  description = "GKE release channel: RAPID, REGULAR or STABLE."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR or STABLE."
  }
}

variable "private_nodes" {
  description = "Give nodes internal addresses only. They then need Cloud NAT (not created here) to pull images and to reach aggregators in other clouds."
  type        = bool
  default     = false
}

variable "api_authorized_cidrs" {
  description = "CIDR blocks allowed to reach the API server's public endpoint; narrow this to the fedsky hub's egress addresses. An empty list leaves the endpoint open to all addresses."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_authorized_cidrs : can(cidrnetmask(c))])
    error_message = "api_authorized_cidrs must hold IPv4 CIDR blocks."
  }
}

variable "machine_type" {
  description = "Compute Engine machine type of the node pool, for example e2-standard-4."
  type        = string
  default     = "e2-standard-4"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]*-[a-z0-9-]+$", var.machine_type))
    error_message = "machine_type must be a machine type name such as e2-standard-4."
  }
}

variable "node_count" {
  description = "Nodes per zone in the node pool."
  type        = number
  default     = 1

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 100."
  }
}

variable "node_disk_size_gb" {
  description = "Boot disk size of each node in GB."
  type        = number
  default     = 50

  validation {
    condition     = var.node_disk_size_gb >= 10 && var.node_disk_size_gb <= 65536
    error_message = "node_disk_size_gb must be from 10 to 65536."
  }
}

variable "spot" {
  description = "Use Spot VMs for the node pool (cheaper, may be reclaimed; aggregators checkpoint and resume)."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster until this is set to false and applied (the provider's own safeguard)."
  type        = bool
  default     = true
}

variable "hub_namespace" {
  description = "Namespace in the fedsky hub for the kubeconfig Secret (and the credentials Secret, if named)."
  type        = string
  default     = "fedsky-system"
}

variable "credentials_secret_name" {
  description = "Secret in hub_namespace with GCP credentials fedsky uses to provision aggregator VMs (MemberCluster spec.credentialsSecretRef); null leaves it out."
  type        = string
  default     = null
}

variable "labels" {
  description = "Labels added to the cluster and node pool."
  type        = map(string)
  default     = {}
}

variable "aggregator_pod_monitor" {
  description = "PodMonitor for the aggregators fedsky runs in this cluster (HTTPS with the module's scrape token): enabled, namespace, labels, interval, tls_config; see modules/fedsky-member's variable of this name."
  type        = any
  default     = {}
  nullable    = false
}
