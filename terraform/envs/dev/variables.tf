variable "region" {
  description = "AWS Region of this environment."
  type        = string
  default     = "us-east-1"
}

variable "project" {
  description = "Short project name, the first part of every resource name (\"<project>-<environment>-...\")."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.project))
    error_message = "project must be 2-16 lowercase letters, digits or dashes, starting with a letter (it ends up in S3 bucket and ALB names)."
  }
}

variable "certificate_arn" {
  description = "ACM certificate ARN for the ALB's HTTPS listener (issue it for the API's domain in the same Region)."
  type        = string
}

variable "api_image_tag" {
  description = "Tag of the API image in the api ECR repository (the commit SHA; tags are immutable)."
  type        = string
}

variable "agent_image_tag" {
  description = "Tag of the sidecar image in the agent ECR repository."
  type        = string
}

variable "cpu_architecture" {
  description = "CPU architecture the images are built for: X86_64 or ARM64."
  type        = string
  default     = "X86_64"
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the sidecar's metrics."
  type        = string
  default     = "ServiceObservability"
}

variable "alb_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach the ALB on 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "pager_subscriptions" {
  description = "Pager topic subscribers: list of {protocol = \"email\" | \"https\", endpoint}. Keep real addresses in a tfvars file outside the repo or in CI variables."
  type = list(object({
    protocol               = string
    endpoint               = string
    endpoint_auto_confirms = optional(bool, false)
  }))
  default = []
}
