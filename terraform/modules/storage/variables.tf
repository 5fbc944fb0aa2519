variable "name" {
  description = "Name prefix (\"<project>-<environment>\"); buckets are <name>-assets-<account> and <name>-logs-<account>."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key ARN for the assets bucket's default encryption."
  type        = string
}

variable "force_destroy" {
  description = "Allow destroying non-empty buckets (dev only)."
  type        = bool
  default     = false
}

variable "assets_prefix" {
  description = "Key prefix of uploaded video assets (moved to Intelligent-Tiering)."
  type        = string
  default     = "assets"
}

variable "generated_prefix" {
  description = "Key prefix of generated files (expired after generated_expiration_days)."
  type        = string
  default     = "generated"
}

variable "assets_tiering_after_days" {
  description = "Days after upload before assets move to S3 Intelligent-Tiering."
  type        = number
  default     = 30
}

variable "generated_expiration_days" {
  description = "Days after which generated files are deleted."
  type        = number
  default     = 90
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept before it is removed."
  type        = number
  default     = 30
}

variable "alb_log_prefix" {
  description = "Prefix of the ALB access logs inside the logs bucket."
  type        = string
  default     = "alb"
}

variable "access_log_expiration_days" {
  description = "Days ALB and S3 access logs are kept."
  type        = number
  default     = 90
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
