variable "name" {
  description = "Name of the MemberCluster object in the fedsky hub (also names the kubeconfig Secret, <name>-kubeconfig)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.name))
    error_message = "name must be a DNS label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit."
  }
}

variable "cloud" {
  description = "Cloud the cluster runs on, as MemberCluster spec.provider: aws, gcp or openstack."
  type        = string

  validation {
    condition     = contains(["aws", "gcp", "openstack"], var.cloud)
    error_message = "cloud must be one of aws, gcp, openstack."
  }
}

variable "region" {
  description = "Region of the cluster in the provider's naming (MemberCluster spec.region); placement looks up latency and prices by it."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$", var.region))
    error_message = "region must be 1-63 letters, digits or '-', starting with a letter or digit (the MemberCluster schema's pattern)."
  }
}

variable "tier" {
  description = "public: fedsky may place aggregators here; private: participants only, next to their data."
  type        = string

  validation {
    condition     = contains(["public", "private"], var.tier)
    error_message = "tier must be public or private."
  }
}

variable "host" {
  description = "HTTPS URL of the cluster's API server, as fedsky in the hub reaches it."
  type        = string

  validation {
    condition     = startswith(var.host, "https://")
    error_message = "host must be an https:// URL."
  }
}

variable "cluster_ca_certificate" {
  description = "PEM-encoded CA certificate of the cluster's API server."
  type        = string

  validation {
    condition     = strcontains(var.cluster_ca_certificate, "BEGIN CERTIFICATE")
    error_message = "cluster_ca_certificate must be PEM (-----BEGIN CERTIFICATE-----); decode base64 first."
  }
}

variable "hub_namespace" {
  description = "Namespace in the fedsky hub that holds the kubeconfig Secret (MemberCluster is cluster-scoped, so the reference names it)."
  type        = string
  default     = "fedsky-system"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.hub_namespace))
    error_message = "hub_namespace must be a DNS label."
  }
}

variable "member_namespace" {
  description = "Namespace in the member cluster for fedsky's ServiceAccount and its token Secret."
  type        = string
  default     = "fedsky-system"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.member_namespace))
    error_message = "member_namespace must be a DNS label."
  }

  validation {
    condition     = var.member_namespace != "fedsky-aggregators"
    error_message = "member_namespace must not be fedsky-aggregators, the namespace of the aggregators (see monitoring.tf)."
  }
}

variable "credentials_secret_name" {
  description = "Name of a Secret in hub_namespace with cloud credentials for this provider (MemberCluster spec.credentialsSecretRef); null leaves the reference out, which private clusters may do."
  type        = string
  default     = null

  validation {
    condition     = var.credentials_secret_name == null || can(regex("^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$", var.credentials_secret_name))
    error_message = "credentials_secret_name must be a DNS subdomain name or null."
  }
}

variable "probe_interval_seconds" {
  description = "Seconds between fedsky's reachability probes of the cluster (5-3600); null keeps the operator's default."
  type        = number
  default     = null

  validation {
    condition     = var.probe_interval_seconds == null || try(var.probe_interval_seconds >= 5 && var.probe_interval_seconds <= 3600 && floor(var.probe_interval_seconds) == var.probe_interval_seconds, false)
    error_message = "probe_interval_seconds must be a whole number from 5 to 3600, or null."
  }
}

variable "aggregator_pod_monitor" {
  description = <<-EOT
    A prometheus-operator PodMonitor scraping the aggregators fedsky runs in this cluster
    (see monitoring.tf). enabled creates it (the monitoring.coreos.com CRDs must be
    installed first); the manifest is the output aggregator_pod_monitor_manifest either
    way. namespace: where the PodMonitor lives (null: member_namespace). labels: what your
    Prometheus's podMonitorSelector matches, for example { release = "kube-prometheus-stack" }.
    The aggregators serve /metrics over HTTPS only, with a certificate from each job's own
    CA, and the PodMonitor authenticates with the module's scrape token (the Secret
    fedsky-metrics-token). tls_config: the PodMonitor's tlsConfig object; null (the
    default) is { insecureSkipVerify = true }, since per-job CAs cannot be known ahead.
  EOT
  type = object({
    enabled    = optional(bool, false)
    namespace  = optional(string)
    labels     = optional(map(string), {})
    interval   = optional(string, "30s")
    tls_config = optional(any)
  })
  default  = {}
  nullable = false
}
