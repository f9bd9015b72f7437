# Runs the module against a mocked kubernetes provider (no cluster) and checks what the
# hub receives: the MemberCluster, the kubeconfig Secret and the kubeconfig inside it.

mock_provider "kubernetes" {
  mock_resource "kubernetes_secret_v1" {
    defaults = {
      data = { token = "mock-service-account-token" }
    }
  }
}

variables {
  name                   = "hospital-eu"
  cloud                  = "openstack"
  region                 = "RegionFrankfurt"
  tier                   = "private"
  host                   = "https://203.0.113.10:6443"
  cluster_ca_certificate = "-----BEGIN CERTIFICATE-----\nMIIBmock\n-----END CERTIFICATE-----\n"
}

run "private_site" {
  assert {
    condition = yamldecode(output.member_cluster_manifest) == {
      apiVersion = "fl.fedsky.dev/v1alpha1"
      kind       = "MemberCluster"
      metadata = {
        name   = "hospital-eu"
        labels = { "app.kubernetes.io/part-of" = "fedsky", "app.kubernetes.io/managed-by" = "opentofu" }
      }
      spec = {
        provider            = "openstack"
        region              = "RegionFrankfurt"
        tier                = "private"
        kubeconfigSecretRef = { namespace = "fedsky-system", name = "hospital-eu-kubeconfig", key = "kubeconfig" }
      }
    }
    error_message = "MemberCluster manifest differs: ${output.member_cluster_manifest}"
  }

  assert {
    condition     = yamldecode(output.kubeconfig_secret_manifest).metadata == { name = "hospital-eu-kubeconfig", namespace = "fedsky-system", labels = { "app.kubernetes.io/part-of" = "fedsky", "app.kubernetes.io/managed-by" = "opentofu" } }
    error_message = "the Secret must be the one the MemberCluster references"
  }

  assert {
    condition     = yamldecode(output.kubeconfig_secret_manifest).stringData.kubeconfig == output.kubeconfig
    error_message = "the Secret must carry the kubeconfig under the key the MemberCluster names"
  }

  assert {
    condition = yamldecode(output.kubeconfig) == {
      apiVersion = "v1"
      kind       = "Config"
      clusters = [{
        name    = "hospital-eu"
        cluster = { server = "https://203.0.113.10:6443", certificate-authority-data = base64encode("-----BEGIN CERTIFICATE-----\nMIIBmock\n-----END CERTIFICATE-----\n") }
      }]
      users           = [{ name = "fedsky-operator", user = { token = "mock-service-account-token" } }]
      contexts        = [{ name = "hospital-eu", context = { cluster = "hospital-eu", user = "fedsky-operator" } }]
      current-context = "hospital-eu"
    }
    error_message = "kubeconfig differs"
  }

  assert {
    condition     = [for d in split("---\n", output.manifests) : yamldecode(d).kind] == ["Secret", "MemberCluster"]
    error_message = "manifests must hold the Secret, then the MemberCluster"
  }

  assert {
    condition     = output.service_account == "fedsky-system/fedsky-operator"
    error_message = "unexpected ServiceAccount"
  }
}

run "public_cluster_with_credentials" {
  variables {
    name                    = "gcp-asia-northeast3"
    cloud                   = "gcp"
    region                  = "asia-northeast3"
    tier                    = "public"
    credentials_secret_name = "gcp-credentials"
    probe_interval_seconds  = 30
  }

  assert {
    condition = yamldecode(output.member_cluster_manifest).spec == {
      provider             = "gcp"
      region               = "asia-northeast3"
      tier                 = "public"
      kubeconfigSecretRef  = { namespace = "fedsky-system", name = "gcp-asia-northeast3-kubeconfig", key = "kubeconfig" }
      credentialsSecretRef = { namespace = "fedsky-system", name = "gcp-credentials" }
      probeIntervalSeconds = 30
    }
    error_message = "spec differs: ${output.member_cluster_manifest}"
  }
}

run "rejects_unknown_tier" {
  command = plan
  variables { tier = "hybrid" }
  expect_failures = [var.tier]
}

run "rejects_unknown_cloud" {
  command = plan
  variables { cloud = "azure" }
  expect_failures = [var.cloud]
}

run "rejects_region_outside_the_crd_pattern" {
  command = plan
  variables { region = "eu_central_1" }
  expect_failures = [var.region]
}

run "rejects_plain_http_api" {
  command = plan
  variables { host = "http://203.0.113.10:6443" }
  expect_failures = [var.host]
}

run "rejects_base64_ca" {
  command = plan
  variables { cluster_ca_certificate = "LS0tLS1CRUdJTi" }
  expect_failures = [var.cluster_ca_certificate]
}

run "rejects_probe_interval_out_of_range" {
  command = plan
  variables { probe_interval_seconds = 2 }
  expect_failures = [var.probe_interval_seconds]
}

run "aggregator_pod_monitor_is_an_output_until_enabled" {
  assert {
    condition     = length(kubernetes_manifest.aggregator_pod_monitor) == 0
    error_message = "the PodMonitor needs its CRD: only created when enabled"
  }

  assert {
    condition = yamldecode(output.aggregator_pod_monitor_manifest) == {
      apiVersion = "monitoring.coreos.com/v1"
      kind       = "PodMonitor"
      metadata = {
        name      = "fedsky-aggregators"
        namespace = "fedsky-system"
        labels    = { "app.kubernetes.io/part-of" = "fedsky", "app.kubernetes.io/managed-by" = "opentofu" }
      }
      spec = {
        namespaceSelector = { matchNames = ["fedsky-aggregators"] }
        selector          = { matchLabels = { "fl.fedsky.dev/role" = "aggregator" } }
        podMetricsEndpoints = [{
          port          = "http"
          path          = "/metrics"
          scheme        = "https"
          interval      = "30s"
          authorization = { type = "Bearer", credentials = { name = "fedsky-metrics-token", key = "token" } }
          tlsConfig     = { insecureSkipVerify = true }
          relabelings = [
            { action = "replace", sourceLabels = ["__meta_kubernetes_pod_annotation_fl_fedsky_dev_job_ref"], regex = "([^/]+)/(.+)", replacement = "$1", targetLabel = "federatedjob_namespace" },
            { action = "replace", sourceLabels = ["__meta_kubernetes_pod_annotation_fl_fedsky_dev_job_ref"], regex = "([^/]+)/(.+)", replacement = "$2", targetLabel = "federatedjob" },
            { action = "replace", replacement = "hospital-eu", targetLabel = "member_cluster" },
          ]
        }]
      }
    }
    error_message = "PodMonitor differs: ${output.aggregator_pod_monitor_manifest}"
  }
}

run "aggregator_pod_monitor_enabled" {
  variables {
    aggregator_pod_monitor = {
      enabled  = true
      labels   = { release = "kube-prometheus-stack" }
      interval = "15s"
    }
  }

  assert {
    condition     = length(kubernetes_manifest.aggregator_pod_monitor) == 1
    error_message = "enabled creates the PodMonitor"
  }

  assert {
    condition     = kubernetes_manifest.aggregator_pod_monitor[0].manifest.metadata.labels.release == "kube-prometheus-stack"
    error_message = "the PodMonitor carries the labels Prometheus selects"
  }

  assert {
    condition = (
      yamldecode(output.aggregator_pod_monitor_manifest).spec.podMetricsEndpoints[0].scheme == "https" &&
      yamldecode(output.aggregator_pod_monitor_manifest).spec.podMetricsEndpoints[0].interval == "15s"
    )
    error_message = "scheme and interval differ: ${output.aggregator_pod_monitor_manifest}"
  }
}

run "aggregator_pod_monitor_with_its_own_tls_config" {
  variables {
    aggregator_pod_monitor = {
      tls_config = { ca = { secret = { name = "one-jobs-ca", key = "ca.crt" } }, serverName = "fedsky-agg-x.fedsky-aggregators.svc" }
    }
  }

  assert {
    condition     = yamldecode(output.aggregator_pod_monitor_manifest).spec.podMetricsEndpoints[0].tlsConfig == { ca = { secret = { name = "one-jobs-ca", key = "ca.crt" } }, serverName = "fedsky-agg-x.fedsky-aggregators.svc" }
    error_message = "tls_config replaces the default tlsConfig: ${output.aggregator_pod_monitor_manifest}"
  }
}

run "the_scrape_token_is_next_to_the_aggregators_and_the_pod_monitor" {
  assert {
    condition     = kubernetes_namespace_v1.aggregators.metadata[0].name == "fedsky-aggregators"
    error_message = "the token Secret needs the aggregators' namespace"
  }

  assert {
    condition     = toset(keys(kubernetes_secret_v1.metrics_token)) == toset(["fedsky-aggregators", "fedsky-system"])
    error_message = "one token Secret where the aggregators mount it, one where the PodMonitor reads it"
  }

  assert {
    condition     = alltrue([for s in kubernetes_secret_v1.metrics_token : s.metadata[0].name == "fedsky-metrics-token" && s.metadata[0].namespace != ""])
    error_message = "the Secret is named as the operator mounts it (names::METRICS_TOKEN_SECRET)"
  }

  assert {
    condition = nonsensitive(
      kubernetes_secret_v1.metrics_token["fedsky-aggregators"].binary_data.token == kubernetes_secret_v1.metrics_token["fedsky-system"].binary_data.token &&
      length(base64decode(kubernetes_secret_v1.metrics_token["fedsky-aggregators"].binary_data.token)) >= 16
    )
    error_message = "both Secrets hold the same token, long enough for the aggregator (16 characters or more)"
  }
}

run "one_token_secret_when_the_pod_monitor_lives_with_the_aggregators" {
  variables {
    aggregator_pod_monitor = { namespace = "fedsky-aggregators" }
  }

  assert {
    condition     = keys(kubernetes_secret_v1.metrics_token) == ["fedsky-aggregators"]
    error_message = "one Secret serves both"
  }
}

run "rejects_the_aggregators_namespace_as_member_namespace" {
  command = plan
  variables { member_namespace = "fedsky-aggregators" }
  expect_failures = [var.member_namespace]
}
