# staging: production's shape at a smaller size. Two tasks (so rolling
# deployments and the circuit breaker behave as in prod), but one NAT gateway
# and a single-AZ database and cache to keep the bill down.

locals {
  environment = "staging"
  app_port    = 8080

  settings = {
    availability_zones = ["${var.region}a", "${var.region}b"]
    vpc_cidr           = "10.20.0.0/16"
    single_nat_gateway = true

    db_instance_class           = "db.t4g.small"
    db_allocated_storage_gb     = 20
    db_max_allocated_storage_gb = 100
    db_multi_az                 = false
    db_backup_retention_days    = 7
    db_skip_final_snapshot      = false

    cache_node_type               = "cache.t4g.micro"
    cache_nodes                   = 1
    cache_snapshot_retention_days = 1

    task_cpu    = 512
    task_memory = 1024
    min_tasks   = 2
    max_tasks   = 4

    deletion_protection         = false
    force_destroy               = false
    apply_immediately           = true
    secret_recovery_window_days = 7
  }
}
