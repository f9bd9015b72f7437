# Applies the example with the clouds and clusters mocked and the local provider real:
# the manifests it writes must describe the clusters of examples/covid-xray.

mock_provider "google" {
  mock_resource "google_container_cluster" {
    defaults = {
      endpoint    = "203.0.113.20"
      master_auth = { cluster_ca_certificate = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=" }
    }
  }
  mock_resource "google_service_account" {
    defaults = {
      email  = "gcp-asia-northeast3-nodes@fedsky-test.iam.gserviceaccount.com"
      member = "serviceAccount:gcp-asia-northeast3-nodes@fedsky-test.iam.gserviceaccount.com"
    }
  }
  mock_data "google_client_config" {
    defaults = { access_token = "mock-access-token" }
  }
}

mock_provider "openstack" {
  alias = "eu"
  mock_resource "openstack_containerinfra_cluster_v1" {
    defaults = {
      kubeconfig = {
        host                   = "https://198.51.100.7:6443"
        cluster_ca_certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        client_certificate     = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        client_key             = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
      }
    }
  }
}

mock_provider "kubernetes" {
  alias = "eu"
  mock_resource "kubernetes_secret_v1" {
    defaults = { data = { token = "mock-eu-token" } }
  }
}

mock_provider "openstack" {
  alias = "asia"
  mock_resource "openstack_containerinfra_cluster_v1" {
    defaults = {
      kubeconfig = {
        host                   = "https://198.51.100.8:6443"
        cluster_ca_certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        client_certificate     = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        client_key             = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
      }
    }
  }
}

mock_provider "kubernetes" {
  alias = "asia"
  mock_resource "kubernetes_secret_v1" {
    defaults = { data = { token = "mock-asia-token" } }
  }
}

mock_provider "openstack" {
  alias = "us"
  mock_resource "openstack_containerinfra_cluster_v1" {
    defaults = {
      kubeconfig = {
        host                   = "https://198.51.100.9:6443"
        cluster_ca_certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        client_certificate     = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        client_key             = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
      }
    }
  }
}

mock_provider "kubernetes" {
  alias = "us"
  mock_resource "kubernetes_secret_v1" {
    defaults = { data = { token = "mock-us-token" } }
  }
}

mock_provider "kubernetes" {
  alias = "aggregator"
  mock_resource "kubernetes_secret_v1" {
    defaults = { data = { token = "mock-aggregator-token" } }
  }
}

variables {
  gcp_project = "fedsky-test"
  output_dir  = "test-generated"
}

run "writes_the_case_study_manifests" {
  assert {
    condition     = keys(local_file.member_cluster) == ["gcp-asia-northeast3", "hospital-asia", "hospital-eu", "hospital-us"]
    error_message = "one MemberCluster file per cluster expected, got ${jsonencode(keys(local_file.member_cluster))}"
  }

  # Provider, region and tier as examples/covid-xray/member-clusters.yaml has them.
  assert {
    condition = {
      for k, f in local_file.member_cluster : k => {
        provider = yamldecode(f.content).spec.provider
        region   = yamldecode(f.content).spec.region
        tier     = yamldecode(f.content).spec.tier
      }
      } == {
      for d in [for doc in split("\n---\n", file("${path.module}/../../../examples/covid-xray/member-clusters.yaml")) : yamldecode(doc)] :
      d.metadata.name => { provider = d.spec.provider, region = d.spec.region, tier = d.spec.tier }
      if contains(keys(local_file.member_cluster), d.metadata.name)
    }
    error_message = "the generated MemberClusters must match examples/covid-xray/member-clusters.yaml"
  }

  assert {
    condition = alltrue([
      for k, f in local_sensitive_file.kubeconfig_secret :
      yamldecode(f.content).metadata.name == yamldecode(local_file.member_cluster[k].content).spec.kubeconfigSecretRef.name
      && yamldecode(yamldecode(f.content).stringData.kubeconfig).current-context == k
    ])
    error_message = "each Secret must be the one its MemberCluster references, with a kubeconfig for that cluster"
  }

  assert {
    condition = {
      for k, f in local_sensitive_file.kubeconfig_secret : k => {
        server = yamldecode(yamldecode(f.content).stringData.kubeconfig).clusters[0].cluster.server
        token  = yamldecode(yamldecode(f.content).stringData.kubeconfig).users[0].user.token
      }
      } == {
      gcp-asia-northeast3 = { server = "https://203.0.113.20", token = "mock-aggregator-token" }
      hospital-eu         = { server = "https://198.51.100.7:6443", token = "mock-eu-token" }
      hospital-asia       = { server = "https://198.51.100.8:6443", token = "mock-asia-token" }
      hospital-us         = { server = "https://198.51.100.9:6443", token = "mock-us-token" }
    }
    error_message = "each kubeconfig must point at its own cluster with the token from that cluster (providers wired per site)"
  }

  assert {
    condition     = local_sensitive_file.kubeconfig_secret["hospital-eu"].file_permission == "0600"
    error_message = "Secrets must be written readable by the owner only"
  }

  assert {
    condition     = yamldecode(local_file.member_cluster["gcp-asia-northeast3"].content).spec.credentialsSecretRef == { namespace = "fedsky-system", name = "gcp-credentials" }
    error_message = "the public cluster must reference the GCP credentials Secret"
  }
}
