output "replication_group_id" {
  description = "ID of the replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "primary_endpoint" {
  description = "Primary endpoint host name."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = local.engine_port
}

output "connection_url" {
  description = "rediss:// URL (TLS) with the AUTH token; store it in Secrets Manager only."
  value       = "rediss://:${random_password.auth.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.engine_port}"
  sensitive   = true
}
