variable "name" {
  description = "Name prefix (\"<project>-<environment>\") for every resource."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (a /16 is expected: subnets are /24 slices of it)."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /16 or larger."
  }
}

variable "availability_zones" {
  description = "The two Availability Zone names to use, e.g. [\"us-east-1a\", \"us-east-1b\"]."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 2 && length(distinct(var.availability_zones)) == 2
    error_message = "availability_zones must name exactly two distinct zones."
  }
}

variable "single_nat_gateway" {
  description = "true: one NAT gateway shared by both AZs (cheaper, for dev/staging); false: one per AZ."
  type        = bool
}

variable "app_port" {
  description = "Port the API container listens on; the only port the ALB may reach."
  type        = number
  default     = 8080
}

variable "alb_ingress_cidrs" {
  description = "IPv4 CIDRs allowed to reach the ALB on 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "kms_key_arn" {
  description = "KMS key ARN that encrypts the flow-log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the flow-log group in days (project default: 30)."
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
