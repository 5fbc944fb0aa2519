output "api_log_group_name" {
  description = "Log group of the API's application logs (AGENT_LOG_GROUP)."
  value       = aws_cloudwatch_log_group.api.name
}

output "api_log_group_arn" {
  description = "ARN of the API's log group."
  value       = aws_cloudwatch_log_group.api.arn
}

output "agent_log_group_name" {
  description = "Log group of the sidecar's own logs (awslogs driver)."
  value       = aws_cloudwatch_log_group.agent.name
}

output "agent_log_group_arn" {
  description = "ARN of the sidecar's log group."
  value       = aws_cloudwatch_log_group.agent.arn
}

output "pager_topic_arn" {
  description = "ARN of the pager SNS topic."
  value       = aws_sns_topic.pager.arn
}

output "name_prefix" {
  description = "Prefix of the alarms Terraform creates in this environment (\"<project>-<environment>-\")."
  value       = local.prefix
}
