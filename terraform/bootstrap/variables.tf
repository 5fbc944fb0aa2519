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

# ------------------------------------------------------- GitHub Actions ----

variable "github_repository" {
  description = "GitHub repository (\"owner/name\") whose deploy workflows may assume the roles in github.tf; nothing else can."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository must be \"owner/name\" (no wildcards)."
  }
}

variable "github_deploy_environments" {
  description = "GitHub environments that deploy (deploy.yml: staging, prod), one deploy role each, trusted for repo:<owner>/<name>:environment:<env> only; also the environments whose ECR repositories the push role may push to."
  type        = list(string)
  default     = ["staging", "prod"]

  validation {
    condition     = length(var.github_deploy_environments) > 0 && alltrue([for e in var.github_deploy_environments : contains(["dev", "staging", "prod"], e)])
    error_message = "github_deploy_environments must list some of dev, staging and prod (the env roots under terraform/envs)."
  }
}

variable "github_ecr_push_branch" {
  description = "Branch whose workflow runs may push images (deploy.yml's images job runs without a GitHub environment): the ECR push role trusts repo:<owner>/<name>:ref:refs/heads/<branch> only."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.github_ecr_push_branch))
    error_message = "github_ecr_push_branch must be a branch name (no wildcards)."
  }
}

variable "github_oidc_provider_arn" {
  description = "ARN of this account's existing token.actions.githubusercontent.com OIDC provider (an account holds one per URL); null creates it."
  type        = string
  default     = null
}
