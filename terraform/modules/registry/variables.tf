variable "name" {
  description = "Name prefix (\"<project>-<environment>\"); repositories are <name>/<repository>."
  type        = string
}

variable "repositories" {
  description = "Repository names to create (one per container image)."
  type        = list(string)
  default     = ["api", "agent"]
}

variable "kms_key_arn" {
  description = "KMS key ARN that encrypts the images."
  type        = string
}

variable "keep_images" {
  description = "Number of most recent images kept per repository (older ones expire)."
  type        = number
  default     = 50
}

variable "force_delete" {
  description = "Allow destroying repositories that still hold images (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
