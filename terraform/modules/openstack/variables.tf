variable "cluster_name" {
  description = "Name of the Magnum cluster; also the MemberCluster name in the fedsky hub, so it must be a DNS label."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit."
  }
}

variable "region" {
  description = "OpenStack region of the site as Keystone names it, for example RegionFrankfurt. Resources are created there whatever the provider's default region is."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$", var.region))
    error_message = "region must be 1-63 letters, digits or '-', starting with a letter or digit (the MemberCluster schema's pattern)."
  }
}

variable "tier" {
  description = "fedsky tier: private (participants only, next to the data; the usual site) or public."
  type        = string
  default     = "private"

  validation {
    condition     = contains(["public", "private"], var.tier)
    error_message = "tier must be public or private."
  }
}

variable "cluster_template_id" {
  description = "ID of an existing Magnum cluster template (many clouds publish tested ones); null creates a template from image, flavors and external_network_id."
  type        = string
  default     = null
}

variable "image" {
  description = "Glance image for the nodes when this module creates the template: a Fedora CoreOS image Magnum's Kubernetes driver supports."
  type        = string
  default     = "fedora-coreos-38"

  validation {
    condition     = length(var.image) > 0
    error_message = "image must not be empty."
  }
}

variable "kube_tag" {
  description = "Kubernetes version label (kube_tag) for a created template, for example v1.30.4; null keeps the driver's default."
  type        = string
  default     = null

  validation {
    condition     = var.kube_tag == null || can(regex("^v1\\.[0-9]+\\.[0-9]+", var.kube_tag))
    error_message = "kube_tag must look like v1.30.4, or be null."
  }
}

variable "external_network_id" {
  description = "ID of the external (provider) network for the API load balancer's floating IP and the nodes' egress router; needed when this module creates the template."
  type        = string
  default     = null
}

variable "dns_nameserver" {
  description = "DNS server for the cluster's private network when this module creates the template."
  type        = string
  default     = "8.8.8.8"

  validation {
    condition     = can(cidrhost("${var.dns_nameserver}/32", 0))
    error_message = "dns_nameserver must be an IPv4 address."
  }
}

variable "master_flavor" {
  description = "Nova flavor of the control-plane nodes."
  type        = string
  default     = "m1.medium"

  validation {
    condition     = length(var.master_flavor) > 0
    error_message = "master_flavor must not be empty."
  }
}

variable "node_flavor" {
  description = "Nova flavor of the worker nodes (pick a GPU flavor for GPU participants)."
  type        = string
  default     = "m1.large"

  validation {
    condition     = length(var.node_flavor) > 0
    error_message = "node_flavor must not be empty."
  }
}

variable "master_count" {
  description = "Number of control-plane nodes: 1, or 3 for high availability."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 3, 5], var.master_count)
    error_message = "master_count must be 1, 3 or 5 (etcd needs an odd number)."
  }
}

variable "node_count" {
  description = "Number of worker nodes."
  type        = number
  default     = 2

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 100 && floor(var.node_count) == var.node_count
    error_message = "node_count must be a whole number from 1 to 100."
  }
}

variable "docker_volume_size_gb" {
  description = "Cinder volume per node for container images, in GB; null keeps the template's setting."
  type        = number
  default     = 50

  validation {
    condition     = var.docker_volume_size_gb == null || try(var.docker_volume_size_gb >= 10, false)
    error_message = "docker_volume_size_gb must be at least 10, or null."
  }
}

variable "keypair" {
  description = "Nova keypair for SSH to the nodes; null for none."
  type        = string
  default     = null
}

variable "fixed_network" {
  description = "Existing private network (name or ID) for the nodes, for example the one next to the hospital's data; null lets Magnum create one."
  type        = string
  default     = null
}

variable "fixed_subnet" {
  description = "Subnet of fixed_network for the nodes; null lets Magnum pick."
  type        = string
  default     = null
}

variable "api_floating_ip" {
  description = "Give the API load balancer a floating IP so the fedsky hub can reach it over the internet (limited by api_allowed_cidrs). Set false when the hub reaches the site through a VPN."
  type        = bool
  default     = true
}

variable "api_allowed_cidrs" {
  description = "CIDR blocks allowed to reach the API load balancer (Magnum's master_lb_allowed_cidrs label); the fedsky hub's egress addresses. Empty means no restriction."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrnetmask(c))])
    error_message = "api_allowed_cidrs must hold IPv4 CIDR blocks."
  }
}

variable "create_timeout_minutes" {
  description = "Minutes to wait for Magnum to create the cluster."
  type        = number
  default     = 60

  validation {
    condition     = var.create_timeout_minutes >= 10 && var.create_timeout_minutes <= 300
    error_message = "create_timeout_minutes must be from 10 to 300."
  }
}

variable "hub_namespace" {
  description = "Namespace in the fedsky hub for the kubeconfig Secret."
  type        = string
  default     = "fedsky-system"
}

variable "credentials_secret_name" {
  description = "Secret in hub_namespace with Keystone application credentials (MemberCluster spec.credentialsSecretRef); null leaves it out, as private sites usually do."
  type        = string
  default     = null
}

variable "aggregator_pod_monitor" {
  description = "PodMonitor for the aggregators fedsky runs in this cluster (HTTPS with the module's scrape token): enabled, namespace, labels, interval, tls_config; see modules/fedsky-member's variable of this name."
  type        = any
  default     = {}
  nullable    = false
}
