# fedsky's identity in a member cluster: a ServiceAccount with a long-lived token and a
# ClusterRole granting what the operator does there. The hub's operator builds its client
# from a kubeconfig Secret and cannot run cloud CLIs (aws, gcloud) as exec plugins, so the
# kubeconfig it gets carries this static token rather than the cloud's short-lived one.

locals {
  labels = {
    "app.kubernetes.io/part-of"    = "fedsky"
    "app.kubernetes.io/managed-by" = "opentofu"
  }
  account = "fedsky-operator"
}

resource "kubernetes_namespace_v1" "fedsky" {
  metadata {
    name   = var.member_namespace
    labels = local.labels
  }
}

resource "kubernetes_service_account_v1" "fedsky" {
  metadata {
    name      = local.account
    namespace = kubernetes_namespace_v1.fedsky.metadata[0].name
    labels    = local.labels
  }
}

# A token Secret, populated by the cluster's token controller; TokenRequest tokens expire
# and nothing would renew them in the hub's Secret.
resource "kubernetes_secret_v1" "token" {
  metadata {
    name      = "${local.account}-token"
    namespace = kubernetes_namespace_v1.fedsky.metadata[0].name
    labels    = local.labels
    annotations = {
      "kubernetes.io/service-account.name" = kubernetes_service_account_v1.fedsky.metadata[0].name
    }
  }
  type                           = "kubernetes.io/service-account-token"
  wait_for_service_account_token = true
}

# What the operator does in a member cluster (operator/src/controllers/federated_job and
# participant_pool): creates namespaces; runs aggregators (Deployment, Service, PVC,
# Secret, NetworkPolicy) and participants (Job, Secret, NetworkPolicy); reads nodes and pods for free capacity,
# participant health and whether an aggregator's pod can be scheduled (it lists and
# watches aggregator pods). No wildcards.
resource "kubernetes_cluster_role_v1" "fedsky" {
  metadata {
    name   = local.account
    labels = local.labels
  }

  rule {
    api_groups = [""]
    resources  = ["namespaces"]
    verbs      = ["get", "list", "watch", "create", "patch"]
  }
  rule {
    api_groups = [""]
    resources  = ["nodes", "pods"]
    verbs      = ["get", "list", "watch"]
  }
  # deletecollection: a job's objects go by label when it is deleted.
  rule {
    api_groups = [""]
    resources  = ["secrets", "services", "persistentvolumeclaims"]
    verbs      = ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
  }
  rule {
    api_groups = ["apps"]
    resources  = ["deployments"]
    verbs      = ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
  }
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
  }
  # Each job's aggregator and participants are confined by policies of their own.
  rule {
    api_groups = ["networking.k8s.io"]
    resources  = ["networkpolicies"]
    verbs      = ["get", "list", "watch", "create", "patch", "delete", "deletecollection"]
  }
}

resource "kubernetes_cluster_role_binding_v1" "fedsky" {
  metadata {
    name   = local.account
    labels = local.labels
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = kubernetes_cluster_role_v1.fedsky.metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account_v1.fedsky.metadata[0].name
    namespace = kubernetes_namespace_v1.fedsky.metadata[0].name
  }
}

locals {
  kubeconfig = yamlencode({
    apiVersion = "v1"
    kind       = "Config"
    clusters = [{
      name = var.name
      cluster = {
        server                     = var.host
        certificate-authority-data = base64encode(var.cluster_ca_certificate)
      }
    }]
    users = [{
      name = local.account
      user = { token = kubernetes_secret_v1.token.data["token"] }
    }]
    contexts = [{
      name    = var.name
      context = { cluster = var.name, user = local.account }
    }]
    current-context = var.name
  })

  secret_name = "${var.name}-kubeconfig"

  kubeconfig_secret = {
    apiVersion = "v1"
    kind       = "Secret"
    metadata = {
      name      = local.secret_name
      namespace = var.hub_namespace
      labels    = local.labels
    }
    type       = "Opaque"
    stringData = { kubeconfig = local.kubeconfig }
  }

  member_cluster = {
    apiVersion = "fl.fedsky.dev/v1alpha1"
    kind       = "MemberCluster"
    metadata = {
      name   = var.name
      labels = local.labels
    }
    # Optional fields are left out rather than set to null, which the schema rejects.
    spec = merge(
      {
        provider = var.cloud
        region   = var.region
        tier     = var.tier
        kubeconfigSecretRef = {
          namespace = var.hub_namespace
          name      = local.secret_name
          key       = "kubeconfig"
        }
      },
      var.credentials_secret_name == null ? {} : {
        credentialsSecretRef = { namespace = var.hub_namespace, name = var.credentials_secret_name }
      },
      var.probe_interval_seconds == null ? {} : {
        probeIntervalSeconds = var.probe_interval_seconds
      },
    )
  }
}
