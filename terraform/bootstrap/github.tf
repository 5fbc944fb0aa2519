# GitHub Actions' way into the account: the OIDC identity provider and the roles
# the deploy workflows assume (no long-lived keys anywhere).
#
#   <project>-github-ecr-push        deploy.yml, job `images` (no GitHub environment):
#                                    AWS_ECR_PUSH_ROLE_ARN, repository variable.
#                                    Trusted for repo:<owner>/<name>:ref:refs/heads/<branch>.
#   <project>-<env>-github-deploy    deploy-environment.yml, one per GitHub environment:
#                                    AWS_DEPLOY_ROLE_ARN, that environment's variable.
#                                    Trusted for repo:<owner>/<name>:environment:<env> only,
#                                    so prod's role is reachable only from a job that prod's
#                                    required reviewers let start.
#
# Each policy grants the calls those workflows make (scripts/deploy, the aws CLI
# lines, docker push/pull, `agent provision apply --prune`), on that environment's
# resources, named as terraform/modules/* name them (<project>-<env>...). The
# Terraform workflows' roles (TF_PLAN_ROLE_ARN, TF_APPLY_ROLE_ARN) are not created
# here.

locals {
  github_oidc_host         = "token.actions.githubusercontent.com"
  github_oidc_provider_arn = var.github_oidc_provider_arn != null ? var.github_oidc_provider_arn : aws_iam_openid_connect_provider.github[0].arn

  account_id = data.aws_caller_identity.current.account_id

  # GitHub environment => "<project>-<env>", the env roots' `name`.
  deploy_names = { for env in var.github_deploy_environments : env => "${var.project}-${env}" }

  # terraform/modules/registry: <project>-<env>/api and <project>-<env>/agent.
  ecr_repository_arns = flatten([
    for name in values(local.deploy_names) : [
      for image in ["api", "agent"] : "arn:aws:ecr:${var.region}:${local.account_id}:repository/${name}/${image}"
    ]
  ])
}

resource "aws_iam_openid_connect_provider" "github" {
  # One provider per URL and account: pass github_oidc_provider_arn if it exists already.
  count = var.github_oidc_provider_arn == null ? 1 : 0

  url            = "https://${local.github_oidc_host}"
  client_id_list = ["sts.amazonaws.com"]
  # IAM checks GitHub's certificate against its own trusted CAs and ignores these
  # thumbprints; AWS provider versions before 5.81 still require the argument.
  thumbprint_list = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
  ]

  tags = { Purpose = "github-actions" }
}

# ------------------------------------------------------------- ECR push ----

data "aws_iam_policy_document" "github_ecr_push_assume" {
  statement {
    sid     = "GitHubBranch"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:sub"
      values   = ["repo:${var.github_repository}:ref:refs/heads/${var.github_ecr_push_branch}"]
    }
  }
}

resource "aws_iam_role" "github_ecr_push" {
  name               = "${var.project}-github-ecr-push"
  description        = "GitHub Actions (${var.github_repository}, ${var.github_ecr_push_branch}): push the api and agent images"
  assume_role_policy = data.aws_iam_policy_document.github_ecr_push_assume.json
  tags               = { Purpose = "github-actions" }
}

data "aws_iam_policy_document" "github_ecr_push" {
  statement {
    sid = "CallerIdentity"
    # `aws sts get-caller-identity`: the registry host is <account>.dkr.ecr...
    actions   = ["sts:GetCallerIdentity"]
    resources = ["*"]
  }

  statement {
    sid = "EcrAuth"
    # `aws ecr get-login-password`; GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid = "EcrPush"
    # DescribeImages: the "already in ECR" check; BatchGetImage: buildx looks up the
    # manifest before pushing it; the rest: docker push.
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:BatchGetImage",
      "ecr:CompleteLayerUpload",
      "ecr:DescribeImages",
      "ecr:InitiateLayerUpload",
      "ecr:PutImage",
      "ecr:UploadLayerPart",
    ]
    resources = local.ecr_repository_arns
  }
}

resource "aws_iam_role_policy" "github_ecr_push" {
  name   = "ecr-push"
  role   = aws_iam_role.github_ecr_push.id
  policy = data.aws_iam_policy_document.github_ecr_push.json
}

# --------------------------------------------------------------- deploy ----

data "aws_iam_policy_document" "github_deploy_assume" {
  for_each = local.deploy_names

  statement {
    sid     = "GitHubEnvironment"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.github_oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.github_oidc_host}:sub"
      values   = ["repo:${var.github_repository}:environment:${each.key}"]
    }
  }
}

resource "aws_iam_role" "github_deploy" {
  for_each = local.deploy_names

  name               = "${each.value}-github-deploy"
  description        = "GitHub Actions (${var.github_repository}, environment ${each.key}): deploy ${each.value}"
  assume_role_policy = data.aws_iam_policy_document.github_deploy_assume[each.key].json
  # The deploy job may run 90 minutes (migration, rollout, rollback); a workflow
  # asking for role-duration-seconds up to that gets it.
  max_session_duration = 5400
  tags                 = { Purpose = "github-actions" }
}

data "aws_iam_policy_document" "github_deploy" {
  for_each = local.deploy_names

  # --- ECS: scripts/deploy (current, render-task-definition, run-migration,
  #     update-service --wait, rollback --to)

  statement {
    sid = "ReadTaskDefinitions"
    # DescribeTaskDefinition has no resource-level permissions.
    actions   = ["ecs:DescribeTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid = "RegisterTaskDefinition"
    # RegisterTaskDefinition has no resource-level permissions; which roles a
    # revision may carry is limited by PassTaskRoles below.
    actions   = ["ecs:RegisterTaskDefinition"]
    resources = ["*"]
  }

  statement {
    sid = "TagNewTaskDefinition"
    # The new revision is registered with the tags of the one it copies.
    actions   = ["ecs:TagResource"]
    resources = ["arn:aws:ecs:${var.region}:${local.account_id}:task-definition/${each.value}-api:*"]
    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RegisterTaskDefinition"]
    }
  }

  statement {
    sid       = "Service"
    actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
    resources = ["arn:aws:ecs:${var.region}:${local.account_id}:service/${each.value}/${each.value}-api"]
  }

  statement {
    sid       = "MigrationTask"
    actions   = ["ecs:RunTask"]
    resources = ["arn:aws:ecs:${var.region}:${local.account_id}:task-definition/${each.value}-api:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = ["arn:aws:ecs:${var.region}:${local.account_id}:cluster/${each.value}"]
    }
  }

  statement {
    sid       = "MigrationTaskStatus"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = ["arn:aws:ecs:${var.region}:${local.account_id}:task/${each.value}/*"]
  }

  statement {
    sid = "PassTaskRoles"
    # terraform/modules/service: the execution role and the task role, to ECS only.
    actions = ["iam:PassRole"]
    resources = [
      "arn:aws:iam::${local.account_id}:role/${each.value}-ecs-execution",
      "arn:aws:iam::${local.account_id}:role/${each.value}-api-task",
    ]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid = "MigrationLog"
    # The migration's output, written by the sidecar to the API's log group.
    actions = ["logs:GetLogEvents"]
    resources = [
      "arn:aws:logs:${var.region}:${local.account_id}:log-group:/ecs/${each.value}/api",
      "arn:aws:logs:${var.region}:${local.account_id}:log-group:/ecs/${each.value}/api:*",
    ]
  }

  # --- ECR: the image check before registering, and the smoke test's docker pull

  statement {
    sid = "EcrAuth"
    # GetAuthorizationToken has no resource-level permissions.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid     = "CheckImages"
    actions = ["ecr:DescribeImages"]
    resources = [
      "arn:aws:ecr:${var.region}:${local.account_id}:repository/${each.value}/api",
      "arn:aws:ecr:${var.region}:${local.account_id}:repository/${each.value}/agent",
    ]
  }

  statement {
    sid       = "PullAgentImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = ["arn:aws:ecr:${var.region}:${local.account_id}:repository/${each.value}/agent"]
  }

  # --- `agent provision apply --prune`: dashboards and alarms named
  #     <project>-<env>-agent-*, and `aws sts get-caller-identity` for AccountId

  statement {
    sid       = "CallerIdentity"
    actions   = ["sts:GetCallerIdentity"]
    resources = ["*"]
  }

  statement {
    sid = "ListDashboards"
    # ListDashboards has no resource-level permissions; it returns names only.
    actions   = ["cloudwatch:ListDashboards"]
    resources = ["*"]
  }

  statement {
    sid       = "ProvisionDashboards"
    actions   = ["cloudwatch:GetDashboard", "cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards"]
    resources = ["arn:aws:cloudwatch::${local.account_id}:dashboard/${each.value}-agent-*"]
  }

  statement {
    sid = "ReadAndDeleteAlarms"
    # DescribeAlarms is authorised per alarm: agent provision lists with
    # AlarmNamePrefix = "<project>-<env>-agent-".
    actions   = ["cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"]
    resources = ["arn:aws:cloudwatch:${var.region}:${local.account_id}:alarm:${each.value}-agent-*"]
  }

  statement {
    sid       = "PutAlarms"
    actions   = ["cloudwatch:PutMetricAlarm"]
    resources = ["arn:aws:cloudwatch:${var.region}:${local.account_id}:alarm:${each.value}-agent-*"]
    # The alarms may only notify the environment's pager topic (terraform/modules/observability).
    condition {
      test     = "ForAllValues:StringEquals"
      variable = "cloudwatch:AlarmActions"
      values   = ["arn:aws:sns:${var.region}:${local.account_id}:${each.value}-pager"]
    }
  }
}

resource "aws_iam_role_policy" "github_deploy" {
  for_each = local.deploy_names

  name   = "deploy"
  role   = aws_iam_role.github_deploy[each.key].id
  policy = data.aws_iam_policy_document.github_deploy[each.key].json
}
