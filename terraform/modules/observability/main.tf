# Log groups of the task, the pager topic and the baseline infrastructure alarms
# (alarms.tf). Alarm names start with "<project>-<environment>-", never with
# "<project>-<environment>-agent-": that prefix belongs to `agent provision`,
# which creates the dashboards (dashboards/*.json) and the alarms in alerts/*.json
# from the deploy workflow and deletes any name under it that no file defines.

locals {
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

# alerts/*.json reach this topic through provision/<env>.json:
#   PagerTopicArn = arn:aws:sns:<region>:<account>:<project>-<environment>-pager
# Renaming it silently leaves those alarms without an action.
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
