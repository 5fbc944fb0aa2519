variable "name" {
  description = "Name prefix (\"<project>-<environment>\"); the group is <name>-redis."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnet IDs (two AZs) for the cache subnet group."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the cache nodes (allows 6379 from the API tasks only)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key ARN for encryption at rest and the slow-log group."
  type        = string
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
  default     = "7.1"
}

variable "parameter_group_name" {
  description = "Cache parameter group; must match the engine's major version."
  type        = string
  default     = "default.redis7"
}

variable "node_type" {
  description = "Cache node type, e.g. cache.t4g.micro (dev) or cache.t4g.small (prod)."
  type        = string
}

variable "num_cache_clusters" {
  description = "Number of nodes (1 = no replica; 2+ enables automatic failover and Multi-AZ)."
  type        = number
  default     = 1

  validation {
    condition     = var.num_cache_clusters >= 1 && var.num_cache_clusters <= 6
    error_message = "num_cache_clusters must be between 1 and 6."
  }
}

variable "snapshot_retention_days" {
  description = "Days of daily snapshots to keep (0 disables snapshots)."
  type        = number
  default     = 1
}

variable "apply_immediately" {
  description = "Apply modifications now instead of in the maintenance window."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Retention of the slow-log group in days (project default: 30)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (PutRetentionPolicy)."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
