# A regional GKE cluster with one node pool, registered with fedsky as a MemberCluster.

locals {
  labels = merge(var.labels, {
    "fedsky-member-cluster" = var.cluster_name
  })
}

# --- IAM: nodes run as their own service account with GKE's minimal node role and
# read access to Artifact Registry, not as the Compute Engine default account (Editor).

resource "google_service_account" "nodes" {
  project      = var.project
  account_id   = "${substr(var.cluster_name, 0, 24)}-nodes"
  display_name = "GKE nodes of ${var.cluster_name} (fedsky)"
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/container.defaultNodeServiceAccount",
    "roles/artifactregistry.reader",
  ])
  project = var.project
  role    = each.value
  member  = google_service_account.nodes.member
}

# --- The cluster and its nodes.

resource "google_container_cluster" "this" {
  project  = var.project
  name     = var.cluster_name
  location = var.region

  network    = var.network
  subnetwork = var.subnetwork

  # Node pools are managed below; GKE needs one at creation, so make the smallest and drop it.
  remove_default_node_pool = true
  initial_node_count       = 1

  networking_mode = "VPC_NATIVE"
  ip_allocation_policy {}

  release_channel {
    channel = var.release_channel
  }

  # Pods get Google identities through Kubernetes ServiceAccounts, not node credentials.
  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }

  dynamic "private_cluster_config" {
    for_each = var.private_nodes ? [1] : []
    content {
      enable_private_nodes    = true
      enable_private_endpoint = false # the fedsky hub reaches the public endpoint
    }
  }

  dynamic "master_authorized_networks_config" {
    for_each = length(var.api_authorized_cidrs) > 0 ? [1] : []
    content {
      dynamic "cidr_blocks" {
        for_each = var.api_authorized_cidrs
        content {
          cidr_block   = cidr_blocks.value
          display_name = "fedsky ${cidr_blocks.value}"
        }
      }
    }
  }

  # No client certificate (GKE's default, stated): fedsky authenticates with its
  # ServiceAccount token, people with their Google identities.
  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  resource_labels     = local.labels
  deletion_protection = var.deletion_protection
}

resource "google_container_node_pool" "this" {
  project        = var.project
  name           = "nodes"
  location       = var.region
  cluster        = google_container_cluster.this.name
  node_locations = var.node_zones
  node_count     = var.node_count

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.machine_type
    disk_size_gb    = var.node_disk_size_gb
    spot            = var.spot
    service_account = google_service_account.nodes.email
    # Access is limited by the service account's IAM roles, as Google recommends.
    oauth_scopes = ["https://www.googleapis.com/auth/cloud-platform"]
    labels       = local.labels

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  depends_on = [google_project_iam_member.nodes]
}

# --- fedsky's identity in the cluster and the manifests for the hub.

module "fedsky" {
  source = "../fedsky-member"

  name                    = var.cluster_name
  cloud                   = "gcp"
  region                  = var.region
  tier                    = var.tier
  host                    = "https://${google_container_cluster.this.endpoint}"
  cluster_ca_certificate  = base64decode(google_container_cluster.this.master_auth[0].cluster_ca_certificate)
  hub_namespace           = var.hub_namespace
  credentials_secret_name = var.credentials_secret_name
  aggregator_pod_monitor  = var.aggregator_pod_monitor

  # Registered once nodes exist: before that fedsky has nowhere to run anything.
  depends_on = [google_container_node_pool.this]
}
