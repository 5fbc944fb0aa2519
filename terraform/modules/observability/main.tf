# Log groups of the task, the pager topic, dashboards from dashboards/*.json and
# the baseline infrastructure alarms. Dashboard and alarm names all start with
# "<project>-<environment>-", the prefix the sidecar is allowed to manage.

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  prefix = "${var.name}-"
}

# ----------------------------------------------------------- log groups ----

# The API's application logs: written by the sidecar (AGENT_LOG_GROUP), which
# receives them from the API container through FireLens.
resource "aws_cloudwatch_log_group" "api" {
  name              = "/ecs/${var.name}/api"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# The sidecar's own logs (awslogs driver), kept apart so that a sidecar failure
# never depends on the sidecar to be seen.
resource "aws_cloudwatch_log_group" "agent" {
  name              = "/ecs/${var.name}/agent"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

# ---------------------------------------------------------------- pager ----

resource "aws_sns_topic" "pager" {
  name              = "${var.name}-pager"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "pager" {
  # Keyed by position: endpoints (HTTPS URLs may carry a token) stay out of
  # resource addresses.
  for_each = { for i, s in var.pager_subscriptions : tostring(i) => s }

  topic_arn              = aws_sns_topic.pager.arn
  protocol               = each.value.protocol
  endpoint               = each.value.endpoint
  endpoint_auto_confirms = each.value.protocol == "https" ? each.value.endpoint_auto_confirms : false
}

# ----------------------------------------------------------- dashboards ----

locals {
  # fileset() of a missing or empty directory is an empty set: zero dashboards.
  dashboard_files = fileset(var.dashboards_dir, "*.json")

  # replace() rather than templatefile(): dashboard JSON may contain other
  # ${...} sequences (CloudWatch label placeholders such as ${PROP('Dim.X')} or
  # ${LAST}) that templatefile would reject; only these six are substituted.
  placeholders = {
    "$${Environment}"   = var.environment
    "$${Region}"        = local.region
    "$${Cluster}"       = var.cluster_name
    "$${Service}"       = var.service_name
    "$${LogGroup}"      = aws_cloudwatch_log_group.api.name
    "$${PagerTopicArn}" = aws_sns_topic.pager.arn
  }

  dashboards = {
    for f in local.dashboard_files :
    "${local.prefix}${replace(trimsuffix(f, ".json"), "/[^A-Za-z0-9_-]/", "-")}" => replace(replace(replace(replace(replace(replace(
      file("${var.dashboards_dir}/${f}"),
      "$${Environment}", local.placeholders["$${Environment}"]),
      "$${Region}", local.placeholders["$${Region}"]),
      "$${Cluster}", local.placeholders["$${Cluster}"]),
      "$${Service}", local.placeholders["$${Service}"]),
      "$${LogGroup}", local.placeholders["$${LogGroup}"]),
    "$${PagerTopicArn}", local.placeholders["$${PagerTopicArn}"])
  }
}

resource "aws_cloudwatch_dashboard" "this" {
  for_each = local.dashboards

  dashboard_name = each.key
  dashboard_body = each.value
}
