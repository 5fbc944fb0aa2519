# prod: highly available. A NAT gateway per AZ, Multi-AZ RDS, a Redis replica
# with automatic failover, at least two tasks, deletion protection on the
# database and the ALB, changes applied in the maintenance window.

locals {
  environment = "prod"
  app_port    = 8080

  settings = {
    availability_zones = ["${var.region}a", "${var.region}b"]
    vpc_cidr           = "10.30.0.0/16"
    single_nat_gateway = false

    db_instance_class           = "db.t4g.medium"
    db_allocated_storage_gb     = 50
    db_max_allocated_storage_gb = 500
    db_multi_az                 = true
    db_backup_retention_days    = 14
    db_skip_final_snapshot      = false

    cache_node_type               = "cache.t4g.small"
    cache_nodes                   = 2
    cache_snapshot_retention_days = 7

    task_cpu    = 1024
    task_memory = 2048
    min_tasks   = 2
    max_tasks   = 10

    deletion_protection         = true
    force_destroy               = false
    apply_immediately           = false
    secret_recovery_window_days = 30
  }
}
