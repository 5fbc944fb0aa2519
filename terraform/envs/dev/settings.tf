# dev: smallest footprint. One NAT gateway, single-AZ database and cache, one
# task; everything can be destroyed without ceremony.

locals {
  environment = "dev"
  app_port    = 8080

  settings = {
    availability_zones = ["${var.region}a", "${var.region}b"]
    vpc_cidr           = "10.10.0.0/16"
    single_nat_gateway = true

    db_instance_class           = "db.t4g.micro"
    db_allocated_storage_gb     = 20
    db_max_allocated_storage_gb = 50
    db_multi_az                 = false
    db_backup_retention_days    = 3
    db_skip_final_snapshot      = true

    cache_node_type               = "cache.t4g.micro"
    cache_nodes                   = 1
    cache_snapshot_retention_days = 0

    task_cpu    = 512
    task_memory = 1024
    min_tasks   = 1
    max_tasks   = 2

    deletion_protection         = false
    force_destroy               = true
    apply_immediately           = true
    secret_recovery_window_days = 0
  }
}
