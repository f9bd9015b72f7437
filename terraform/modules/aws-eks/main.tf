# An EKS cluster with one managed node group, registered with fedsky as a MemberCluster.

locals {
  tags = merge(var.tags, {
    "fedsky.dev/member-cluster" = var.cluster_name
  })
  node_min = coalesce(var.node_min_count, var.node_count)
  node_max = coalesce(var.node_max_count, var.node_count)
}

data "aws_partition" "current" {}

# --- IAM: one role for the control plane, one for the nodes, AWS-managed policies only.

data "aws_iam_policy_document" "eks_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name_prefix        = "${substr(var.cluster_name, 0, 24)}-eks-"
  assume_role_policy = data.aws_iam_policy_document.eks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${substr(var.cluster_name, 0, 24)}-node-"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
  tags               = local.tags
}

# What a managed node needs: join the cluster, run the VPC CNI, and pull images (pull
# only, not push) from ECR.
resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryPullOnly",
  ])
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

# --- The cluster and its nodes.

resource "aws_eks_cluster" "this" {
  region   = var.region
  name     = var.cluster_name
  version  = var.kubernetes_version
  role_arn = aws_iam_role.cluster.arn

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = var.endpoint_public_access
    public_access_cidrs     = var.endpoint_public_access ? var.public_access_cidrs : null
  }

  # Access entries (API mode) instead of the aws-auth ConfigMap; whoever runs OpenTofu
  # becomes cluster admin so the kubernetes provider can create fedsky's ServiceAccount.
  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = true
  }

  tags = local.tags

  # EKS deletes its network interfaces with the role's permissions: keep them until then.
  depends_on = [aws_iam_role_policy_attachment.cluster]
}

resource "aws_eks_node_group" "this" {
  region          = var.region
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "nodes"
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.subnet_ids
  instance_types  = [var.node_instance_type]
  capacity_type   = var.capacity_type
  disk_size       = var.node_disk_size_gb

  scaling_config {
    desired_size = var.node_count
    min_size     = local.node_min
    max_size     = local.node_max
  }

  update_config {
    max_unavailable = 1
  }

  labels = {
    "fedsky.dev/member-cluster" = var.cluster_name
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.node_min <= var.node_count && var.node_count <= local.node_max
      error_message = "node_min_count <= node_count <= node_max_count must hold."
    }
    # The cluster autoscaler, if installed, owns the desired size after creation.
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# --- fedsky's identity in the cluster and the manifests for the hub.

module "fedsky" {
  source = "../fedsky-member"

  name                    = var.cluster_name
  cloud                   = "aws"
  region                  = var.region
  tier                    = var.tier
  host                    = aws_eks_cluster.this.endpoint
  cluster_ca_certificate  = base64decode(aws_eks_cluster.this.certificate_authority[0].data)
  hub_namespace           = var.hub_namespace
  credentials_secret_name = var.credentials_secret_name
  aggregator_pod_monitor  = var.aggregator_pod_monitor

  # Registered once nodes exist: before that fedsky has nowhere to run anything.
  depends_on = [aws_eks_node_group.this]
}
