# One customer-managed key per environment. It encrypts the log groups, the pager
# topic, the secrets, the RDS storage and Performance Insights, Redis at rest, ECR
# and the assets bucket, so that revoking or auditing access happens in one place.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
}

resource "aws_kms_key" "this" {
  description             = "${var.name} encryption key (logs, secrets, RDS, Redis, ECR, S3, SNS)"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days

  # Written as a literal document: key policies always use Resource "*" (it means
  # "this key"), which generic IAM linters would misread on a policy document.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # Delegates everything else to IAM policies in this account (the default
        # key policy); services below use the key through those IAM grants.
        Sid       = "AccountAdministration"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # CloudWatch Logs encrypts log groups itself and needs its own grant,
        # limited to log groups of this account and Region.
        Sid       = "CloudWatchLogs"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action = [
          "kms:Encrypt*",
          "kms:Decrypt*",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:Describe*",
        ]
        Resource = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:aws:logs:${local.region}:${local.account_id}:log-group:*"
          }
        }
      },
      {
        # CloudWatch alarms publish to the encrypted pager topic.
        Sid       = "CloudWatchAlarmsToSns"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}
