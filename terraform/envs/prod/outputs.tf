output "alb_dns_name" {
  description = "DNS name of the ALB; point the API's domain (CNAME or alias) at it."
  value       = module.service.alb_dns_name
}

output "ecr_repository_urls" {
  description = "Where CI pushes the images: {api = ..., agent = ...}."
  value       = module.registry.repository_urls
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = module.service.cluster_name
}

output "service_name" {
  description = "ECS service name."
  value       = module.service.service_name
}

output "assets_bucket_name" {
  description = "Bucket of video assets and generated files."
  value       = module.storage.assets_bucket_name
}

output "api_log_group_name" {
  description = "Log group of the API's logs (shipped by the sidecar)."
  value       = module.observability.api_log_group_name
}

output "pager_topic_arn" {
  description = "Pager SNS topic."
  value       = module.observability.pager_topic_arn
}

output "out_of_band_secret_names" {
  description = "Secrets whose values must be put with `aws secretsmanager put-secret-value` before the first deploy."
  value       = module.secrets.out_of_band_secret_names
}

output "nat_public_ips" {
  description = "Egress IPs of the tasks (for third-party allow-lists)."
  value       = module.network.nat_public_ips
}
