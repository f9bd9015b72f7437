# Runs the module against mocked openstack and kubernetes providers (no cloud): checks
# the Magnum settings that matter to fedsky and the manifests for the hub.

mock_provider "openstack" {
  mock_resource "openstack_containerinfra_cluster_v1" {
    defaults = {
      kubeconfig = {
        host                   = "https://198.51.100.7:6443"
        cluster_ca_certificate = "-----BEGIN CERTIFICATE-----\nMIIBsite\n-----END CERTIFICATE-----\n"
        client_certificate     = "-----BEGIN CERTIFICATE-----\nMIIBadmin\n-----END CERTIFICATE-----\n"
        client_key             = "-----BEGIN RSA PRIVATE KEY-----\nMIIEkey\n-----END RSA PRIVATE KEY-----\n"
        raw_config             = "unused"
      }
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
  cluster_name        = "hospital-eu"
  region              = "RegionFrankfurt"
  external_network_id = "public"
  api_allowed_cidrs   = ["198.51.100.0/24", "203.0.113.0/24"]
}

run "creates_template_and_private_cluster" {
  assert {
    condition     = length(openstack_containerinfra_clustertemplate_v1.this) == 1 && openstack_containerinfra_cluster_v1.this.cluster_template_id == openstack_containerinfra_clustertemplate_v1.this[0].id
    error_message = "without cluster_template_id the module must create a template and use it"
  }

  assert {
    condition     = openstack_containerinfra_cluster_v1.this.region == "RegionFrankfurt" && openstack_containerinfra_clustertemplate_v1.this[0].region == "RegionFrankfurt"
    error_message = "Magnum resources must be created in var.region"
  }

  assert {
    condition     = openstack_containerinfra_cluster_v1.this.floating_ip_enabled == false && openstack_containerinfra_cluster_v1.this.master_lb_enabled == true
    error_message = "nodes must get no floating IPs; the API sits behind the load balancer"
  }

  assert {
    condition     = openstack_containerinfra_cluster_v1.this.labels["master_lb_allowed_cidrs"] == "198.51.100.0/24,203.0.113.0/24" && openstack_containerinfra_cluster_v1.this.labels["master_lb_floating_ip_enabled"] == "true"
    error_message = "API access labels differ: ${jsonencode(openstack_containerinfra_cluster_v1.this.labels)}"
  }

  assert {
    condition = yamldecode(output.member_cluster_manifest).spec == {
      provider            = "openstack"
      region              = "RegionFrankfurt"
      tier                = "private"
      kubeconfigSecretRef = { namespace = "fedsky-system", name = "hospital-eu-kubeconfig", key = "kubeconfig" }
    }
    error_message = "MemberCluster spec differs: ${output.member_cluster_manifest}"
  }

  assert {
    condition     = yamldecode(output.kubeconfig).clusters[0].cluster.server == "https://198.51.100.7:6443" && yamldecode(output.kubeconfig).users[0].user == { token = "mock-service-account-token" }
    error_message = "the hub's kubeconfig must use the Magnum API address and fedsky's token, not the admin certificate"
  }

  assert {
    condition     = output.endpoint == "https://198.51.100.7:6443" && startswith(output.cluster_ca_certificate, "-----BEGIN CERTIFICATE-----")
    error_message = "endpoint and CA outputs differ"
  }
}

run "uses_a_given_template" {
  variables {
    cluster_template_id = "0f4c1c52-59c5-4c5a-9a2f-9c1a0e7d2b11"
    external_network_id = null
    api_floating_ip     = false
    api_allowed_cidrs   = []
  }

  assert {
    condition     = length(openstack_containerinfra_clustertemplate_v1.this) == 0 && openstack_containerinfra_cluster_v1.this.cluster_template_id == "0f4c1c52-59c5-4c5a-9a2f-9c1a0e7d2b11"
    error_message = "a given template must be used as is"
  }

  assert {
    condition     = openstack_containerinfra_cluster_v1.this.labels["master_lb_floating_ip_enabled"] == "false" && !contains(keys(openstack_containerinfra_cluster_v1.this.labels), "master_lb_allowed_cidrs")
    error_message = "labels differ: ${jsonencode(openstack_containerinfra_cluster_v1.this.labels)}"
  }
}

run "template_needs_an_external_network" {
  command = plan
  variables {
    external_network_id = null
  }
  expect_failures = [openstack_containerinfra_clustertemplate_v1.this]
}

run "rejects_even_master_count" {
  command = plan
  variables { master_count = 2 }
  expect_failures = [var.master_count]
}

run "rejects_cluster_name_that_is_not_a_dns_label" {
  command = plan
  variables { cluster_name = "Hospital_EU" }
  expect_failures = [var.cluster_name]
}
