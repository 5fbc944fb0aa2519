output "assets_bucket_name" {
  description = "Name of the assets bucket."
  value       = aws_s3_bucket.assets.id
}

output "assets_bucket_arn" {
  description = "ARN of the assets bucket."
  value       = aws_s3_bucket.assets.arn
}

output "logs_bucket_name" {
  description = "Name of the access-log bucket (read from its policy, so consumers such as the ALB wait until log delivery is allowed)."
  value       = aws_s3_bucket_policy.logs.bucket
}

output "alb_log_prefix" {
  description = "Prefix of the ALB access logs inside the logs bucket."
  value       = var.alb_log_prefix
}
