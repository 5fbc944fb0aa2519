variable "name" {
  description = "Name prefix (\"<project>-<environment>\"): cluster <name>, service <name>-api; also the prefix of the dashboards and alarms the sidecar may manage."
  type        = string
}

variable "environment" {
  description = "Environment name, passed to both containers as APP_ENV (the sidecar's Environment metric dimension)."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be dev, staging or prod."
  }
}

# ----------------------------------------------------------------- network --

variable "vpc_id" {
  description = "VPC of the target group."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets of the ALB (two AZs)."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Private subnets of the tasks (two AZs)."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "Security group of the ALB."
  type        = string
}

variable "api_security_group_id" {
  description = "Security group of the API tasks."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate ARN of the HTTPS listener (same Region as the ALB)."
  type        = string
}

variable "access_logs_bucket" {
  description = "S3 bucket receiving the ALB access logs (SSE-S3, with the ELB delivery policy)."
  type        = string
}

variable "access_logs_prefix" {
  description = "Prefix of the ALB access logs in that bucket."
  type        = string
  default     = "alb"
}

variable "alb_deletion_protection" {
  description = "Refuse to delete the ALB until this is turned off."
  type        = bool
  default     = false
}

variable "waf_rate_limit_per_5min" {
  description = "Requests per client IP per 5 minutes above which WAF blocks that IP."
  type        = number
  default     = 2000
}

# -------------------------------------------------------------- containers --

variable "app_port" {
  description = "Port the API listens on (PORT)."
  type        = number
  default     = 8080
}

variable "api_image_repository_url" {
  description = "ECR repository URL of the API image."
  type        = string
}

variable "api_image_tag" {
  description = "Tag of the API image to run (immutable tags: use the commit SHA)."
  type        = string
}

variable "agent_image_repository_url" {
  description = "ECR repository URL of the sidecar image."
  type        = string
}

variable "agent_image_tag" {
  description = "Tag of the sidecar image to run."
  type        = string
}

variable "ecr_repository_arns" {
  description = "ARNs of the repositories the execution role may pull from."
  type        = list(string)
}

variable "cpu_architecture" {
  description = "CPU architecture of the images: X86_64 or ARM64 (Graviton, ~20% cheaper)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "task_cpu" {
  description = "Task CPU units (256 = 0.25 vCPU), shared by the API and the sidecar."
  type        = number
}

variable "task_memory" {
  description = "Task memory in MiB, shared by the API and the sidecar."
  type        = number
}

variable "agent_memory_reservation_mib" {
  description = "Soft memory reservation of the sidecar in MiB."
  type        = number
  default     = 128
}

variable "api_stop_timeout_seconds" {
  description = "Seconds between SIGTERM and SIGKILL for the API container."
  type        = number
  default     = 30
}

variable "agent_stop_timeout_seconds" {
  description = "Seconds between SIGTERM and SIGKILL for the sidecar; longer than the API's so it drains last (Fargate max 120)."
  type        = number
  default     = 60

  validation {
    condition     = var.agent_stop_timeout_seconds <= 120
    error_message = "Fargate caps stopTimeout at 120 seconds."
  }
}

variable "readonly_root_filesystem" {
  description = "Mount both containers' root filesystems read-only (/tmp stays writable)."
  type        = bool
  default     = true
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the sidecar's metrics (AGENT_METRICS_NAMESPACE and the PutMetricData condition)."
  type        = string
  default     = "ServiceObservability"
}

variable "api_log_group_name" {
  description = "Log group the sidecar ships the API's logs to (AGENT_LOG_GROUP)."
  type        = string
}

variable "api_log_group_arn" {
  description = "ARN of that log group (sidecar permissions)."
  type        = string
}

variable "agent_log_group_name" {
  description = "Log group of the sidecar's own logs (awslogs driver)."
  type        = string
}

variable "agent_log_group_arn" {
  description = "ARN of the sidecar's log group (execution role permissions)."
  type        = string
}

variable "secret_arns" {
  description = "Secret ARN by variable name; must contain every secret the API and the sidecar receive."
  type        = map(string)

  validation {
    condition = alltrue([for n in ["DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY", "REPLICATE_API_KEY", "SUNO_API_KEY", "JWT_SECRET", "SENTRY_DSN"] :
    contains(keys(var.secret_arns), n)])
    error_message = "secret_arns must contain DATABASE_URL, REDIS_URL, OPENAI_API_KEY, REPLICATE_API_KEY, SUNO_API_KEY, JWT_SECRET and SENTRY_DSN."
  }
}

variable "app_secret_arn" {
  description = "ARN of the API's runtime JSON secret (APP_SECRETS_ID)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key encrypting the secrets, the assets bucket and the WAF log group."
  type        = string
}

variable "assets_bucket_name" {
  description = "Assets bucket name, passed to the API as ASSETS_BUCKET."
  type        = string
}

variable "assets_bucket_arn" {
  description = "Assets bucket ARN (API permissions)."
  type        = string
}

# ----------------------------------------------------------------- scaling --

variable "desired_count" {
  description = "Tasks started when the service is created (autoscaling owns it afterwards)."
  type        = number
}

variable "min_count" {
  description = "Autoscaling minimum number of tasks."
  type        = number
}

variable "max_count" {
  description = "Autoscaling maximum number of tasks."
  type        = number
}

variable "cpu_target_percent" {
  description = "Average service CPU utilisation that autoscaling aims for."
  type        = number
  default     = 60
}

variable "memory_target_percent" {
  description = "Average service memory utilisation that autoscaling aims for."
  type        = number
  default     = 75
}

variable "health_check_grace_period_seconds" {
  description = "Seconds after a task starts during which failing ALB health checks are ignored."
  type        = number
  default     = 60
}

variable "log_retention_days" {
  description = "Retention of the WAF log group in days (project default: 30)."
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
