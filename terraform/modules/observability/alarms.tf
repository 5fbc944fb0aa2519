# Baseline alarms on AWS-provided metrics that alerts/*.json does not cover;
# they page through the SNS topic. alerts/*.json (created by `agent provision`
# in the deploy workflow as "<project>-<environment>-agent-<name>") holds the
# alarms on the sidecar's metrics (API down, 5xx rate, p99 latency, sidecar
# heartbeat and drops) and the RDS ones (CPU, free storage), so none of those
# is defined here: one signal, one page. test_invariants.py fails if an alarm
# here watches a metric that an alarm in alerts/ also watches.
#
# What stays here, and why:
#   api-running-tasks-low  ECS/ContainerInsights RunningTaskCount (no data breaching)
#   api-unhealthy-targets  ALB UnHealthyHostCount: the ALB's own /health view
#   api-5xx                ALB HTTPCode_Target_5XX_Count: fires even when the sidecar,
#                          whose metrics alerts/api-5xx-rate.json uses, is down
#   api-latency-p99        ALB TargetResponseTime, likewise independent of the sidecar
#   cache-memory-high      ElastiCache DatabaseMemoryUsagePercentage

locals {
  alarm_actions = [aws_sns_topic.pager.arn]
}

resource "aws_cloudwatch_metric_alarm" "running_tasks" {
  alarm_name        = "${local.prefix}api-running-tasks-low"
  alarm_description = "Fewer API tasks running than the autoscaling minimum. No data (cluster or service gone) counts as breaching."
  namespace         = "ECS/ContainerInsights"
  metric_name       = "RunningTaskCount"
  dimensions = {
    ClusterName = var.cluster_name
    ServiceName = var.service_name
  }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.min_running_tasks
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_targets" {
  alarm_name        = "${local.prefix}api-unhealthy-targets"
  alarm_description = "At least one API task fails the ALB /health check."
  namespace         = "AWS/ApplicationELB"
  metric_name       = "UnHealthyHostCount"
  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = var.target_group_arn_suffix
  }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "target_5xx" {
  alarm_name        = "${local.prefix}api-5xx"
  alarm_description = "The API answered 5xx more than ${var.api_5xx_threshold} times in 5 minutes, twice in a row."
  namespace         = "AWS/ApplicationELB"
  metric_name       = "HTTPCode_Target_5XX_Count"
  dimensions = {
    LoadBalancer = var.alb_arn_suffix
    TargetGroup  = var.target_group_arn_suffix
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.api_5xx_threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "latency_p99" {
  alarm_name          = "${local.prefix}api-latency-p99"
  alarm_description   = "p99 target response time above ${var.api_p99_latency_seconds}s for 15 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  dimensions          = { LoadBalancer = var.alb_arn_suffix }
  extended_statistic  = "p99"
  period              = 300
  evaluation_periods  = 3
  threshold           = var.api_p99_latency_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "cache_memory" {
  alarm_name          = "${local.prefix}cache-memory-high"
  alarm_description   = "Redis memory above 85% of maxmemory for 15 minutes (evictions imminent)."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { ReplicationGroupId = var.cache_replication_group_id }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 85
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = var.tags
}
