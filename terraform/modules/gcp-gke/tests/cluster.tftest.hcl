# Runs the module against mocked google and kubernetes providers (no cloud): checks the
# cluster settings that matter to fedsky and the manifests for the hub.

mock_provider "google" {
  mock_resource "google_container_cluster" {
    defaults = {
      endpoint = "203.0.113.20"
      # A block with max one item is overridden with an object, not a list.
      master_auth = {
        cluster_ca_certificate = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJna2UKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
      }
    }
  }
  mock_resource "google_service_account" {
    defaults = {
      email  = "gcp-asia-northeast3-nodes@fedsky-test.iam.gserviceaccount.com"
      member = "serviceAccount:gcp-asia-northeast3-nodes@fedsky-test.iam.gserviceaccount.com"
    }
  }
}

mock_provider "kubernetes" {
  mock_resource "kubernetes_secret_v1" {
    defaults = {
      data = { token = "mock-service-account-token" }
    }
  }
}

variables {
  project                 = "fedsky-test"
  cluster_name            = "gcp-asia-northeast3"
  region                  = "asia-northeast3"
  credentials_secret_name = "gcp-credentials"
}

run "public_cluster" {
  assert {
    condition     = google_container_cluster.this.location == "asia-northeast3" && google_container_node_pool.this.location == "asia-northeast3"
    error_message = "the cluster must be regional, in var.region"
  }

  assert {
    condition     = length(google_container_cluster.this.private_cluster_config) == 0 && length(google_container_cluster.this.master_authorized_networks_config) == 0
    error_message = "defaults must give public nodes and an unrestricted endpoint"
  }

  assert {
    condition     = google_container_node_pool.this.node_config[0].service_account == "gcp-asia-northeast3-nodes@fedsky-test.iam.gserviceaccount.com" && google_container_node_pool.this.node_config[0].workload_metadata_config[0].mode == "GKE_METADATA"
    error_message = "nodes must run as the module's service account behind the GKE metadata server"
  }

  assert {
    condition     = toset([for m in google_project_iam_member.nodes : m.role]) == toset(["roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader"])
    error_message = "the node service account must get exactly the minimal node role and Artifact Registry read"
  }

  assert {
    condition     = google_container_cluster.this.deletion_protection == true
    error_message = "deletion protection must default to on"
  }

  assert {
    condition = yamldecode(output.member_cluster_manifest).spec == {
      provider             = "gcp"
      region               = "asia-northeast3"
      tier                 = "public"
      kubeconfigSecretRef  = { namespace = "fedsky-system", name = "gcp-asia-northeast3-kubeconfig", key = "kubeconfig" }
      credentialsSecretRef = { namespace = "fedsky-system", name = "gcp-credentials" }
    }
    error_message = "MemberCluster spec differs: ${output.member_cluster_manifest}"
  }

  assert {
    condition     = output.endpoint == "https://203.0.113.20" && yamldecode(output.kubeconfig).clusters[0].cluster.server == "https://203.0.113.20"
    error_message = "the API address must be an https URL built from the cluster endpoint"
  }

  assert {
    condition     = startswith(output.cluster_ca_certificate, "-----BEGIN CERTIFICATE-----")
    error_message = "the CA output must be PEM, decoded from GKE's base64"
  }
}

run "private_nodes_and_authorized_networks" {
  variables {
    private_nodes        = true
    api_authorized_cidrs = ["198.51.100.0/24"]
  }

  assert {
    condition     = google_container_cluster.this.private_cluster_config[0].enable_private_nodes == true && google_container_cluster.this.private_cluster_config[0].enable_private_endpoint == false
    error_message = "private nodes must keep the public endpoint the hub uses"
  }

  assert {
    condition     = [for b in google_container_cluster.this.master_authorized_networks_config[0].cidr_blocks : b.cidr_block] == ["198.51.100.0/24"]
    error_message = "authorized networks differ"
  }
}

run "rejects_cluster_name_starting_with_a_digit" {
  command = plan
  variables { cluster_name = "1-gke" }
  expect_failures = [var.cluster_name]
}

run "rejects_zone_as_region" {
  command = plan
  variables { region = "asia-northeast3-a" }
  expect_failures = [var.region]
}

run "rejects_unknown_release_channel" {
  command = plan
  variables { release_channel = "BETA" }
  expect_failures = [var.release_channel]
}
