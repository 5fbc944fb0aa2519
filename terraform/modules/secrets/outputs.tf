output "secret_arns" {
  description = "Secret ARN by environment-variable name (DATABASE_URL, REDIS_URL, ...)."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

output "app_secret_arn" {
  description = "ARN of the API's runtime JSON secret (APP_SECRETS_ID)."
  value       = aws_secretsmanager_secret.app.arn
}

output "out_of_band_secret_names" {
  description = "Full names of the secrets whose values must be set out of band before the first deploy."
  value       = [for k in local.out_of_band : aws_secretsmanager_secret.this[k].name]
}
