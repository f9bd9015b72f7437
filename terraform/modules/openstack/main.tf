# A participant site on OpenStack: a Magnum Kubernetes cluster (from a given template or
# one created here), registered with fedsky as a MemberCluster.

locals {
  create_template = var.cluster_template_id == null
  template_id     = local.create_template ? openstack_containerinfra_clustertemplate_v1.this[0].id : var.cluster_template_id

  # Cluster labels are merged over the template's (merge_labels below).
  labels = merge(
    {
      master_lb_floating_ip_enabled = tostring(var.api_floating_ip)
      "fedsky.dev/member-cluster"   = var.cluster_name
    },
    length(var.api_allowed_cidrs) > 0 ? { master_lb_allowed_cidrs = join(",", var.api_allowed_cidrs) } : {},
    var.kube_tag == null ? {} : { kube_tag = var.kube_tag },
  )

  # Magnum's kubeconfig: an admin (system:masters) client certificate the provider has
  # Magnum sign. It is used only here, to create fedsky's ServiceAccount; the hub gets
  # that account's token instead.
  kube = openstack_containerinfra_cluster_v1.this.kubeconfig
}

resource "openstack_containerinfra_clustertemplate_v1" "this" {
  count = local.create_template ? 1 : 0

  region              = var.region
  name                = "${var.cluster_name}-template"
  coe                 = "kubernetes"
  image               = var.image
  master_flavor       = var.master_flavor
  flavor              = var.node_flavor
  external_network_id = var.external_network_id
  dns_nameserver      = var.dns_nameserver
  network_driver      = "calico"
  volume_driver       = "cinder"
  docker_volume_size  = var.docker_volume_size_gb
  server_type         = "vm"
  # The API sits behind a load balancer; nodes get no public addresses, so a hospital's
  # participants are reachable only from inside its network.
  master_lb_enabled   = true
  floating_ip_enabled = false

  lifecycle {
    precondition {
      condition     = var.external_network_id != null
      error_message = "external_network_id is required when no cluster_template_id is given (the template needs it)."
    }
  }
}

resource "openstack_containerinfra_cluster_v1" "this" {
  region              = var.region
  name                = var.cluster_name
  cluster_template_id = local.template_id
  master_count        = var.master_count
  node_count          = var.node_count
  master_flavor       = var.master_flavor
  flavor              = var.node_flavor
  keypair             = var.keypair
  docker_volume_size  = var.docker_volume_size_gb
  fixed_network       = var.fixed_network
  fixed_subnet        = var.fixed_subnet
  master_lb_enabled   = true
  floating_ip_enabled = false
  labels              = local.labels
  merge_labels        = true
  create_timeout      = var.create_timeout_minutes
}

# --- fedsky's identity in the cluster and the manifests for the hub.

module "fedsky" {
  source = "../fedsky-member"

  name   = var.cluster_name
  cloud  = "openstack"
  region = var.region
  tier   = var.tier
  # The kubeconfig attribute is sensitive as a whole; its address and CA are not secrets.
  host                    = nonsensitive(local.kube["host"])
  cluster_ca_certificate  = nonsensitive(local.kube["cluster_ca_certificate"])
  hub_namespace           = var.hub_namespace
  credentials_secret_name = var.credentials_secret_name
  aggregator_pod_monitor  = var.aggregator_pod_monitor
}
