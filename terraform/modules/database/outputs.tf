output "instance_identifier" {
  description = "RDS instance identifier (CloudWatch dimension DBInstanceIdentifier)."
  value       = aws_db_instance.this.identifier
}

output "instance_arn" {
  description = "ARN of the RDS instance."
  value       = aws_db_instance.this.arn
}

output "address" {
  description = "Host name of the instance."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the instance."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the application database."
  value       = aws_db_instance.this.db_name
}

output "connection_url" {
  description = "postgres:// connection string with the generated password, TLS required; store it in Secrets Manager only."
  value       = "postgres://${var.master_username}:${random_password.master.result}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${aws_db_instance.this.db_name}?sslmode=require"
  sensitive   = true
}

output "log_group_names" {
  description = "Log groups receiving the exported PostgreSQL logs."
  value       = [for g in aws_cloudwatch_log_group.exports : g.name]
}
