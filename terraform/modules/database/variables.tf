variable "name" {
  description = "Name prefix (\"<project>-<environment>\"); the instance is <name>-postgres."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnet IDs (two AZs) for the DB subnet group."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the instance (allows 5432 from the API tasks only)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key ARN for storage, Performance Insights and the exported log groups."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL version; a major version alone lets RDS apply minor upgrades."
  type        = string
  default     = "15"

  validation {
    condition     = startswith(var.engine_version, "15")
    error_message = "This stack targets PostgreSQL 15 (the parameter group family is postgres15)."
  }
}

variable "instance_class" {
  description = "RDS instance class, e.g. db.t4g.micro (dev) or db.t4g.medium (prod)."
  type        = string
}

variable "database_name" {
  description = "Name of the application database."
  type        = string
  default     = "app"
}

variable "master_username" {
  description = "Master user name (the password is generated)."
  type        = string
  default     = "app_admin"
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GiB."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gb" {
  description = "Upper bound for storage autoscaling in GiB."
  type        = number
  default     = 100
}

variable "multi_az" {
  description = "Run a synchronous standby in the second AZ (prod)."
  type        = bool
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 1-35 (0 would disable automated backups)."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the instance until this is turned off."
  type        = bool
}

variable "skip_final_snapshot" {
  description = "Skip the final snapshot on destroy (dev only)."
  type        = bool
  default     = false
}

variable "apply_immediately" {
  description = "Apply modifications now instead of in the maintenance window."
  type        = bool
  default     = false
}

variable "slow_query_log_ms" {
  description = "log_min_duration_statement: statements slower than this (ms) are logged; -1 disables."
  type        = number
  default     = 500
}

variable "monitoring_interval_seconds" {
  description = "Enhanced Monitoring interval (1, 5, 10, 15, 30 or 60 s)."
  type        = number
  default     = 60

  validation {
    condition     = contains([1, 5, 10, 15, 30, 60], var.monitoring_interval_seconds)
    error_message = "monitoring_interval_seconds must be 1, 5, 10, 15, 30 or 60 (0 would disable it)."
  }
}

variable "log_retention_days" {
  description = "Retention of the exported PostgreSQL log groups in days (project default: 30)."
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
