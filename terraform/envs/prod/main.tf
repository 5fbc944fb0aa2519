# Wiring of the modules for one environment. This file is identical in every
# env root (envs/dev, envs/staging, envs/prod); what differs lives in
# settings.tf and in the backend key (versions.tf).

locals {
  name = "${var.project}-${local.environment}"
  tags = {
    Project     = var.project
    Environment = local.environment
    ManagedBy   = "terraform"
  }
}

module "kms" {
  source = "../../modules/kms"

  name = local.name
  tags = local.tags
}

module "network" {
  source = "../../modules/network"

  name               = local.name
  availability_zones = local.settings.availability_zones
  vpc_cidr           = local.settings.vpc_cidr
  single_nat_gateway = local.settings.single_nat_gateway
  app_port           = local.app_port
  alb_ingress_cidrs  = var.alb_ingress_cidrs
  kms_key_arn        = module.kms.key_arn
  tags               = local.tags
}

module "database" {
  source = "../../modules/database"

  name                     = local.name
  subnet_ids               = module.network.private_subnet_ids
  security_group_id        = module.network.db_security_group_id
  kms_key_arn              = module.kms.key_arn
  instance_class           = local.settings.db_instance_class
  allocated_storage_gb     = local.settings.db_allocated_storage_gb
  max_allocated_storage_gb = local.settings.db_max_allocated_storage_gb
  multi_az                 = local.settings.db_multi_az
  backup_retention_days    = local.settings.db_backup_retention_days
  deletion_protection      = local.settings.deletion_protection
  skip_final_snapshot      = local.settings.db_skip_final_snapshot
  apply_immediately        = local.settings.apply_immediately
  tags                     = local.tags
}

module "cache" {
  source = "../../modules/cache"

  name                    = local.name
  subnet_ids              = module.network.private_subnet_ids
  security_group_id       = module.network.cache_security_group_id
  kms_key_arn             = module.kms.key_arn
  node_type               = local.settings.cache_node_type
  num_cache_clusters      = local.settings.cache_nodes
  snapshot_retention_days = local.settings.cache_snapshot_retention_days
  apply_immediately       = local.settings.apply_immediately
  tags                    = local.tags
}

module "storage" {
  source = "../../modules/storage"

  name          = local.name
  kms_key_arn   = module.kms.key_arn
  force_destroy = local.settings.force_destroy
  tags          = local.tags
}

module "registry" {
  source = "../../modules/registry"

  name         = local.name
  kms_key_arn  = module.kms.key_arn
  force_delete = local.settings.force_destroy
  tags         = local.tags
}

module "secrets" {
  source = "../../modules/secrets"

  name_prefix             = "${var.project}/${local.environment}"
  kms_key_arn             = module.kms.key_arn
  database_url            = module.database.connection_url
  redis_url               = module.cache.connection_url
  recovery_window_in_days = local.settings.secret_recovery_window_days
  tags                    = local.tags
}

# Dashboards (dashboards/*.json) and the alarms in alerts/*.json are not here:
# the deploy workflow creates them with `agent provision apply` (see README.md).
module "observability" {
  source = "../../modules/observability"

  name                       = local.name
  kms_key_arn                = module.kms.key_arn
  pager_subscriptions        = var.pager_subscriptions
  cluster_name               = module.service.cluster_name
  service_name               = module.service.service_name
  alb_arn_suffix             = module.service.alb_arn_suffix
  target_group_arn_suffix    = module.service.target_group_arn_suffix
  cache_replication_group_id = module.cache.replication_group_id
  min_running_tasks          = local.settings.min_tasks
  tags                       = local.tags
}

module "service" {
  source = "../../modules/service"

  name        = local.name
  environment = local.environment

  vpc_id                = module.network.vpc_id
  public_subnet_ids     = module.network.public_subnet_ids
  private_subnet_ids    = module.network.private_subnet_ids
  alb_security_group_id = module.network.alb_security_group_id
  api_security_group_id = module.network.api_security_group_id
  certificate_arn       = var.certificate_arn
  access_logs_bucket    = module.storage.logs_bucket_name
  access_logs_prefix    = module.storage.alb_log_prefix

  alb_deletion_protection = local.settings.deletion_protection

  app_port                   = local.app_port
  api_image_repository_url   = module.registry.repository_urls["api"]
  api_image_tag              = var.api_image_tag
  agent_image_repository_url = module.registry.repository_urls["agent"]
  agent_image_tag            = var.agent_image_tag
  ecr_repository_arns        = values(module.registry.repository_arns)
  cpu_architecture           = var.cpu_architecture
  task_cpu                   = local.settings.task_cpu
  task_memory                = local.settings.task_memory
  metrics_namespace          = var.metrics_namespace

  api_log_group_name   = module.observability.api_log_group_name
  api_log_group_arn    = module.observability.api_log_group_arn
  agent_log_group_name = module.observability.agent_log_group_name
  agent_log_group_arn  = module.observability.agent_log_group_arn

  secret_arns        = module.secrets.secret_arns
  app_secret_arn     = module.secrets.app_secret_arn
  kms_key_arn        = module.kms.key_arn
  assets_bucket_name = module.storage.assets_bucket_name
  assets_bucket_arn  = module.storage.assets_bucket_arn

  desired_count = local.settings.min_tasks
  min_count     = local.settings.min_tasks
  max_count     = local.settings.max_tasks

  tags = local.tags
}
