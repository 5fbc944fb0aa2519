variable "name" {
  description = "Name prefix (\"<project>-<environment>\"); the alarms are named \"<name>-...\" and the pager topic \"<name>-pager\"."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key ARN for the log groups and the pager topic."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the API and sidecar log groups in days (project default: 30)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (PutRetentionPolicy)."
  }
}

variable "pager_subscriptions" {
  description = "Who the pager topic notifies: a list of {protocol = \"email\" | \"https\", endpoint, endpoint_auto_confirms}."
  type = list(object({
    protocol               = string
    endpoint               = string
    endpoint_auto_confirms = optional(bool, false)
  }))
  default = []

  validation {
    condition     = alltrue([for s in var.pager_subscriptions : contains(["email", "https"], s.protocol)])
    error_message = "pager_subscriptions[*].protocol must be \"email\" or \"https\"."
  }
}

variable "cluster_name" {
  description = "ECS cluster name (alarm dimension ClusterName)."
  type        = string
}

variable "service_name" {
  description = "ECS service name (alarm dimension ServiceName)."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the ALB (CloudWatch dimension LoadBalancer)."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the API target group (CloudWatch dimension TargetGroup)."
  type        = string
}

variable "cache_replication_group_id" {
  description = "ElastiCache replication group ID (CloudWatch dimension ReplicationGroupId)."
  type        = string
}

variable "min_running_tasks" {
  description = "Alarm when fewer API tasks than this are running (usually the autoscaling minimum)."
  type        = number
  default     = 1
}

variable "api_5xx_threshold" {
  description = "5xx responses per 5 minutes above which the 5xx alarm fires."
  type        = number
  default     = 10
}

variable "api_p99_latency_seconds" {
  description = "p99 target response time (seconds) above which the latency alarm fires."
  type        = number
  default     = 2
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
