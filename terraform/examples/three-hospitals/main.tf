# The chest X-ray case study (examples/covid-xray): three hospitals, each a
# private Magnum cluster on its own OpenStack cloud, and one public GKE cluster where
# fedsky may place the aggregator. Writes the hub manifests (kubeconfig Secrets and
# MemberClusters) under var.output_dir for `kubectl apply -f`.

# --- Hospitals: each site is its own OpenStack cloud (a clouds.yaml entry) with its own
# kubernetes provider, authenticated with the admin certificate Magnum signs. The sites
# are spelled out rather than generated with for_each: a provider configured from the
# outputs of a for_each module forms a dependency cycle (OpenTofu cannot tell which
# instance an each.key reference means), so a fourth site is a copy of one block.

provider "openstack" {
  alias  = "eu"
  cloud  = var.hospitals["hospital-eu"].cloud
  region = var.hospitals["hospital-eu"].region
}

provider "kubernetes" {
  alias                  = "eu"
  host                   = module.hospital_eu.endpoint
  cluster_ca_certificate = module.hospital_eu.cluster_ca_certificate
  client_certificate     = module.hospital_eu.admin_client_certificate
  client_key             = module.hospital_eu.admin_client_key
}

module "hospital_eu" {
  source = "../../modules/openstack"
  providers = {
    openstack  = openstack.eu
    kubernetes = kubernetes.eu
  }

  cluster_name        = "hospital-eu"
  region              = var.hospitals["hospital-eu"].region
  tier                = "private"
  external_network_id = var.hospitals["hospital-eu"].external_network_id
  node_flavor         = var.hospitals["hospital-eu"].node_flavor
  node_count          = var.hospitals["hospital-eu"].node_count
  api_allowed_cidrs   = var.hub_api_cidrs
  hub_namespace       = var.hub_namespace
}

provider "openstack" {
  alias  = "asia"
  cloud  = var.hospitals["hospital-asia"].cloud
  region = var.hospitals["hospital-asia"].region
}

provider "kubernetes" {
  alias                  = "asia"
  host                   = module.hospital_asia.endpoint
  cluster_ca_certificate = module.hospital_asia.cluster_ca_certificate
  client_certificate     = module.hospital_asia.admin_client_certificate
  client_key             = module.hospital_asia.admin_client_key
}

module "hospital_asia" {
  source = "../../modules/openstack"
  providers = {
    openstack  = openstack.asia
    kubernetes = kubernetes.asia
  }

  cluster_name        = "hospital-asia"
  region              = var.hospitals["hospital-asia"].region
  tier                = "private"
  external_network_id = var.hospitals["hospital-asia"].external_network_id
  node_flavor         = var.hospitals["hospital-asia"].node_flavor
  node_count          = var.hospitals["hospital-asia"].node_count
  api_allowed_cidrs   = var.hub_api_cidrs
  hub_namespace       = var.hub_namespace
}

provider "openstack" {
  alias  = "us"
  cloud  = var.hospitals["hospital-us"].cloud
  region = var.hospitals["hospital-us"].region
}

provider "kubernetes" {
  alias                  = "us"
  host                   = module.hospital_us.endpoint
  cluster_ca_certificate = module.hospital_us.cluster_ca_certificate
  client_certificate     = module.hospital_us.admin_client_certificate
  client_key             = module.hospital_us.admin_client_key
}

module "hospital_us" {
  source = "../../modules/openstack"
  providers = {
    openstack  = openstack.us
    kubernetes = kubernetes.us
  }

  cluster_name        = "hospital-us"
  region              = var.hospitals["hospital-us"].region
  tier                = "private"
  external_network_id = var.hospitals["hospital-us"].external_network_id
  node_flavor         = var.hospitals["hospital-us"].node_flavor
  node_count          = var.hospitals["hospital-us"].node_count
  api_allowed_cidrs   = var.hub_api_cidrs
  hub_namespace       = var.hub_namespace
}

# --- The public cluster for the aggregator, named as examples/covid-xray names it.

provider "google" {
  project = var.gcp_project
  region  = var.aggregator_region
}

data "google_client_config" "current" {}

provider "kubernetes" {
  alias                  = "aggregator"
  host                   = module.aggregator.endpoint
  cluster_ca_certificate = module.aggregator.cluster_ca_certificate
  token                  = data.google_client_config.current.access_token
}

module "aggregator" {
  source = "../../modules/gcp-gke"
  providers = {
    google     = google
    kubernetes = kubernetes.aggregator
  }

  project                 = var.gcp_project
  cluster_name            = local.aggregator_name
  region                  = var.aggregator_region
  tier                    = "public"
  machine_type            = var.aggregator_machine_type
  api_authorized_cidrs    = var.hub_api_cidrs
  hub_namespace           = var.hub_namespace
  credentials_secret_name = "gcp-credentials"
}

# --- Manifests for the hub. Secrets hold bearer tokens: written 0600, kept out of git
# (see .gitignore).

locals {
  aggregator_name = "gcp-${var.aggregator_region}"
  # for_each goes over the names, known at plan time, not over the sensitive manifests.
  members = {
    hospital-eu             = module.hospital_eu
    hospital-asia           = module.hospital_asia
    hospital-us             = module.hospital_us
    (local.aggregator_name) = module.aggregator
  }
  member_names             = toset(["hospital-eu", "hospital-asia", "hospital-us", local.aggregator_name])
  secret_manifests         = { for k, m in local.members : k => m.kubeconfig_secret_manifest }
  member_cluster_manifests = { for k, m in local.members : k => m.member_cluster_manifest }
}

resource "local_sensitive_file" "kubeconfig_secret" {
  for_each        = local.member_names
  filename        = "${path.module}/${var.output_dir}/${each.key}.kubeconfig-secret.yaml"
  content         = local.secret_manifests[each.key]
  file_permission = "0600"
}

resource "local_file" "member_cluster" {
  for_each        = local.member_names
  filename        = "${path.module}/${var.output_dir}/${each.key}.member-cluster.yaml"
  content         = local.member_cluster_manifests[each.key]
  file_permission = "0644"
}
