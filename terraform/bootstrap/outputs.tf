output "state_bucket" {
  description = "Name of the state bucket: pass it to `terraform init -backend-config=bucket=...` in each env root."
  value       = aws_s3_bucket.state.id
}

output "state_kms_key_arn" {
  description = "KMS key encrypting the state objects."
  value       = aws_kms_key.state.arn
}

output "state_access_log_bucket" {
  description = "Bucket receiving the state bucket's S3 server access logs."
  value       = aws_s3_bucket.state_logs.id
}

output "github_oidc_provider_arn" {
  description = "The GitHub Actions OIDC provider the roles trust."
  value       = local.github_oidc_provider_arn
}

output "github_deploy_role_arns" {
  description = "Deploy role ARN by GitHub environment: set it as AWS_DEPLOY_ROLE_ARN in that environment's variables (deploy-environment.yml)."
  value       = { for env, role in aws_iam_role.github_deploy : env => role.arn }
}

output "github_ecr_push_role_arn" {
  description = "ECR push role ARN: set it as the repository variable AWS_ECR_PUSH_ROLE_ARN (deploy.yml, job images)."
  value       = aws_iam_role.github_ecr_push.arn
}
