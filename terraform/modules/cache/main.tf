# ElastiCache Redis in the private subnets, encrypted at rest (KMS) and in
# transit (TLS), with a generated AUTH token. REDIS_URL (rediss://) is an output
# that the env root stores in Secrets Manager.

locals {
  # replication_group_id: at most 40 characters.
  id          = substr("${var.name}-redis", 0, 40)
  replicated  = var.num_cache_clusters > 1
  engine_port = 6379
}

resource "random_password" "auth" {
  length = 48
  # AUTH tokens may not contain / " @ and the token is embedded in a URL.
  special = false
}

resource "aws_elasticache_subnet_group" "this" {
  name        = local.id
  description = "Private subnets of ${var.name}"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

resource "aws_cloudwatch_log_group" "slow_log" {
  name              = "/aws/elasticache/${local.id}/slow-log"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = local.id
  description          = "Redis for ${var.name}"

  engine               = "redis"
  engine_version       = var.engine_version
  parameter_group_name = var.parameter_group_name
  node_type            = var.node_type
  port                 = local.engine_port
  num_cache_clusters   = var.num_cache_clusters

  automatic_failover_enabled = local.replicated
  multi_az_enabled           = local.replicated

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [var.security_group_id]

  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = random_password.auth.result

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = "02:00-03:00"
  maintenance_window         = "sun:05:30-sun:06:30"
  auto_minor_version_upgrade = true
  apply_immediately          = var.apply_immediately

  log_delivery_configuration {
    destination      = aws_cloudwatch_log_group.slow_log.name
    destination_type = "cloudwatch-logs"
    log_format       = "json"
    log_type         = "slow-log"
  }

  tags = var.tags
}
