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
