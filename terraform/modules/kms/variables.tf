variable "name" {
  description = "Name prefix (\"<project>-<environment>\"); the key alias is alias/<name>."
  type        = string
}

variable "deletion_window_in_days" {
  description = "Days a scheduled key deletion waits before the key is destroyed (7-30)."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
