output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnet IDs (ALB, NAT), one per AZ."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnet IDs (tasks, RDS, Redis), one per AZ."
  value       = aws_subnet.private[*].id
}

output "alb_security_group_id" {
  description = "Security group of the ALB."
  value       = aws_security_group.alb.id
}

output "api_security_group_id" {
  description = "Security group of the API tasks."
  value       = aws_security_group.api.id
}

output "db_security_group_id" {
  description = "Security group of the RDS instance."
  value       = aws_security_group.db.id
}

output "cache_security_group_id" {
  description = "Security group of the Redis replication group."
  value       = aws_security_group.cache.id
}

output "nat_public_ips" {
  description = "Public IPs of the NAT gateways (egress addresses to allow-list at third parties)."
  value       = aws_eip.nat[*].public_ip
}

output "flow_log_group_name" {
  description = "CloudWatch log group of the VPC flow logs."
  value       = aws_cloudwatch_log_group.flow_logs.name
}
