variable "name_prefix" {
  description = "Secret name prefix, e.g. \"<project>/<environment>\"; secrets are <prefix>/<NAME>."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key ARN that encrypts the secrets."
  type        = string
}

variable "database_url" {
  description = "Value of DATABASE_URL (from the database module)."
  type        = string
  sensitive   = true
}

variable "redis_url" {
  description = "Value of REDIS_URL (from the cache module)."
  type        = string
  sensitive   = true
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once; otherwise 7-30)."
  type        = number
  default     = 7

  validation {
    condition     = var.recovery_window_in_days == 0 || (var.recovery_window_in_days >= 7 && var.recovery_window_in_days <= 30)
    error_message = "recovery_window_in_days must be 0 or between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
