variable "region" {
  description = "Region of the state bucket (the env roots' backend blocks use the same)."
  type        = string
  default     = "us-east-1"
}

variable "project" {
  description = "Short project name; the bucket is <project>-tfstate-<account id> unless state_bucket_name is set."
  type        = string
  default     = "app"
}

variable "state_bucket_name" {
  description = "Explicit state bucket name (globally unique); null derives it from project and account ID."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days an overwritten state version is kept (the window to roll a state file back)."
  type        = number
  default     = 90
}

variable "access_log_days" {
  description = "Days the state bucket's access logs are kept."
  type        = number
  default     = 365
}
