# IAM for the task.
#
# execution role: used by ECS itself to pull the images, write the sidecar's
#                 awslogs stream and resolve the `secrets` into the containers.
# task role:      the credentials the containers' code gets. ECS gives ONE task
#                 role to all containers of a task (there is no per-container
#                 role), so the API's and the sidecar's permissions are two
#                 separate policies on that role, each scoped to what that
#                 container needs. Splitting them into two roles would need two
#                 task definitions, i.e. the sidecar would no longer be a sidecar.

data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id

  # Dashboards and alarms the sidecar manages: "<project>-<environment>-*".
  managed_prefix      = "${var.name}-"
  dashboard_arn_glob  = "arn:aws:cloudwatch::${local.account_id}:dashboard/${local.managed_prefix}*"
  alarm_arn_glob      = "arn:aws:cloudwatch:${local.region}:${local.account_id}:alarm:${local.managed_prefix}*"
  sentry_secret_arn   = var.secret_arns["SENTRY_DSN"]
  api_secret_arns     = [for n in local.api_secret_names : var.secret_arns[n]]
  secretsmanager_host = "secretsmanager.${local.region}.amazonaws.com"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    # Confused-deputy guard: only ECS acting for this account may assume it.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:aws:ecs:${local.region}:${local.account_id}:*"]
    }
  }
}

# ------------------------------------------------------- execution role ----

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  description        = "ECS: pull the ${var.name} images, write the sidecar's logs, inject the task secrets"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid = "EcrAuth"
    # GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPull"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
    ]
    resources = var.ecr_repository_arns
  }

  statement {
    sid       = "AgentOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.agent_log_group_arn}:*"]
  }

  statement {
    sid       = "InjectSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = distinct(local.api_secret_arns)
  }

  statement {
    sid       = "DecryptSecretsAndImages"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.secretsmanager_host, "ecr.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "ecs-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ------------------------------------------------------------ task role ----

resource "aws_iam_role" "task" {
  name               = "${var.name}-api-task"
  description        = "Credentials of the ${var.name} API task: one policy for the API container, one for the sidecar"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

# What the API container needs: its runtime secret and its bucket.
data "aws_iam_policy_document" "api" {
  statement {
    sid       = "AppSecret"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [var.app_secret_arn]
  }

  statement {
    sid       = "AppSecretDecrypt"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:SecretARN"
      values   = [var.app_secret_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.secretsmanager_host]
    }
  }

  statement {
    sid       = "AssetsBucketList"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.assets_bucket_arn]
  }

  statement {
    sid = "AssetsObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${var.assets_bucket_arn}/*"]
  }

  statement {
    sid       = "AssetsEncryption"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [var.assets_bucket_arn]
    }
  }
}

resource "aws_iam_role_policy" "api" {
  name   = "api-container"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.api.json
}

# What the sidecar needs: ship logs to the API's log group, publish metrics in
# its namespace, manage the environment's dashboards and alarms, read the
# Sentry DSN.
data "aws_iam_policy_document" "agent" {
  statement {
    sid = "ShipLogs"
    actions = [
      "logs:CreateLogGroup",
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:PutRetentionPolicy",
      "logs:DescribeLogStreams",
    ]
    resources = [var.api_log_group_arn, "${var.api_log_group_arn}:*"]
  }

  statement {
    sid = "PutMetrics"
    # PutMetricData has no resource-level permissions; the namespace condition scopes it.
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }

  statement {
    sid       = "ManageDashboards"
    actions   = ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"]
    resources = [local.dashboard_arn_glob]
  }

  statement {
    sid = "ManageAlarms"
    # DescribeAlarms is authorised per alarm: the agent lists with
    # AlarmNamePrefix = "<project>-<environment>-".
    actions   = ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"]
    resources = [local.alarm_arn_glob]
  }

  statement {
    sid = "ListDashboards"
    # ListDashboards has no resource-level permissions; it returns names only.
    actions   = ["cloudwatch:ListDashboards"]
    resources = ["*"]
  }

  statement {
    sid       = "SentryDsn"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.sentry_secret_arn]
  }

  statement {
    sid       = "SentryDsnDecrypt"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:SecretARN"
      values   = [local.sentry_secret_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.secretsmanager_host]
    }
  }
}

resource "aws_iam_role_policy" "agent" {
  name   = "agent-sidecar"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.agent.json
}
