variable "gcp_project" {
  description = "Google Cloud project for the public aggregator cluster."
  type        = string
}

variable "aggregator_region" {
  description = "Google Cloud region of the public cluster fedsky may place the aggregator in."
  type        = string
  default     = "asia-northeast3"
}

variable "aggregator_machine_type" {
  description = "Machine type of the aggregator cluster's nodes."
  type        = string
  default     = "e2-standard-4"
}

variable "hospitals" {
  description = "The three hospital sites, keyed by MemberCluster name: the clouds.yaml entry of each hospital's OpenStack, its region, the external network (name or ID) for the API load balancer, and the worker nodes."
  type = map(object({
    cloud               = string
    region              = string
    external_network_id = string
    node_flavor         = optional(string, "m1.large")
    node_count          = optional(number, 2)
  }))
  default = {
    hospital-eu   = { cloud = "hospital-eu", region = "RegionFrankfurt", external_network_id = "public" }
    hospital-asia = { cloud = "hospital-asia", region = "RegionSeoul", external_network_id = "public" }
    hospital-us   = { cloud = "hospital-us", region = "RegionVirginia", external_network_id = "public" }
  }

  validation {
    condition     = toset(keys(var.hospitals)) == toset(["hospital-eu", "hospital-asia", "hospital-us"])
    error_message = "hospitals must have exactly the keys hospital-eu, hospital-asia and hospital-us (main.tf has one block per site)."
  }

  validation {
    condition     = alltrue([for h in var.hospitals : length(h.cloud) > 0 && length(h.external_network_id) > 0])
    error_message = "each hospital needs a clouds.yaml entry (cloud) and an external network."
  }
}

variable "hub_api_cidrs" {
  description = "Egress addresses of the fedsky hub, allowed to reach every member's API server. Empty leaves the API endpoints open to all addresses."
  type        = list(string)
  default     = []
}

variable "hub_namespace" {
  description = "Namespace of the fedsky operator in the hub, where the kubeconfig Secrets go."
  type        = string
  default     = "fedsky-system"
}

variable "output_dir" {
  description = "Directory the hub manifests are written to, relative to this root."
  type        = string
  default     = "generated"
}
