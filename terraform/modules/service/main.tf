# ECS cluster, the Fargate task (API container + observability sidecar) and the
# ECS service behind the ALB.
#
# Inside the task:
#   api   --stdout/stderr via FireLens (awsfirelens)--> agent --> CloudWatch Logs (AGENT_LOG_GROUP)
#   api   --OTLP http://127.0.0.1:4318--------------> agent --> CloudWatch metrics / Sentry
#   agent --own logs (awslogs)--> /ecs/<name>/agent
# Start order: the agent first; the API only once the agent's health check
# passes (dependsOn HEALTHY). Stop order: the API (30 s) before the agent
# (60 s), so the agent drains everything the API wrote last.

data "aws_region" "current" {}

locals {
  region          = data.aws_region.current.name
  api_container   = "api"
  agent_container = "agent"

  # Every secret the API receives; all of them via `secrets`, none via `environment`.
  api_secret_names = [
    "DATABASE_URL",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "REPLICATE_API_KEY",
    "SUNO_API_KEY",
    "JWT_SECRET",
    "SENTRY_DSN",
  ]
  agent_secret_names = ["SENTRY_DSN"]

  api_definition = {
    name                   = local.api_container
    image                  = "${var.api_image_repository_url}:${var.api_image_tag}"
    essential              = true
    readonlyRootFilesystem = var.readonly_root_filesystem
    stopTimeout            = var.api_stop_timeout_seconds

    portMappings = [{
      name          = "http"
      containerPort = var.app_port
      hostPort      = var.app_port
      protocol      = "tcp"
    }]

    # Plain settings only: secrets go through `secrets` below.
    environment = [
      { name = "APP_ENV", value = var.environment },
      { name = "APP_SECRETS_ID", value = var.app_secret_arn },
      { name = "ASSETS_BUCKET", value = var.assets_bucket_name },
      { name = "AWS_REGION", value = local.region },
      { name = "OTEL_EXPORTER_OTLP_ENDPOINT", value = "http://127.0.0.1:4318" },
      { name = "PORT", value = tostring(var.app_port) },
    ]

    secrets = [for n in local.api_secret_names : { name = n, valueFrom = var.secret_arns[n] }]

    # stdout/stderr go to the sidecar through FireLens; the sidecar ships them.
    logConfiguration = {
      logDriver = "awsfirelens"
    }

    dependsOn = [{
      containerName = local.agent_container
      condition     = "HEALTHY"
    }]

    # The image has no shell or curl: the binary probes its own /health.
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/api", "healthcheck"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 15
    }

    mountPoints = [{
      sourceVolume  = "api-tmp"
      containerPath = "/tmp"
      readOnly      = false
    }]

    linuxParameters = {
      initProcessEnabled = true
    }
  }

  agent_definition = {
    name                   = local.agent_container
    image                  = "${var.agent_image_repository_url}:${var.agent_image_tag}"
    essential              = true
    readonlyRootFilesystem = var.readonly_root_filesystem
    stopTimeout            = var.agent_stop_timeout_seconds
    memoryReservation      = var.agent_memory_reservation_mib

    # ECS writes a Fluent Bit configuration and the FireLens socket for this
    # container; the agent speaks Fluent Forward on the socket and on
    # 127.0.0.1:24224.
    firelensConfiguration = {
      type = "fluentbit"
      options = {
        "enable-ecs-log-metadata" = "true"
      }
    }

    healthCheck = {
      command     = ["CMD", "/usr/local/bin/agent", "health"]
      interval    = 10
      timeout     = 5
      retries     = 3
      startPeriod = 10
    }

    # APP_ENV: the agent's config (agent/agent.example.toml, baked into the image)
    # sets the Environment dimension of its metrics to ${APP_ENV:-dev}; without it
    # every environment would publish as "dev" and the alarms in alerts/ (which
    # filter on Environment) would watch the wrong series.
    environment = [
      { name = "AGENT_LOG_GROUP", value = var.api_log_group_name },
      { name = "AGENT_METRICS_NAMESPACE", value = var.metrics_namespace },
      { name = "APP_ENV", value = var.environment },
      { name = "AWS_REGION", value = local.region },
    ]

    secrets = [for n in local.agent_secret_names : { name = n, valueFrom = var.secret_arns[n] }]

    # The agent's own logs must not depend on the agent.
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = var.agent_log_group_name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = local.agent_container
      }
    }

    mountPoints = [{
      sourceVolume  = "agent-tmp"
      containerPath = "/tmp"
      readOnly      = false
    }]

    linuxParameters = {
      initProcessEnabled = true
    }
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "this" {
  family                   = "${var.name}-api"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_cpu
  memory                   = var.task_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  # Scratch space on the task's ephemeral storage, since root filesystems are read-only.
  volume {
    name = "api-tmp"
  }

  volume {
    name = "agent-tmp"
  }

  # The agent is listed first: it is the log router the API depends on.
  container_definitions = jsonencode([local.agent_definition, local.api_definition])

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name             = "${var.name}-api"
  cluster          = aws_ecs_cluster.this.id
  task_definition  = aws_ecs_task_definition.this.arn
  desired_count    = var.desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.health_check_grace_period_seconds
  enable_ecs_managed_tags            = true
  propagate_tags                     = "SERVICE"
  enable_execute_command             = false

  # A deployment whose tasks never get healthy is stopped and rolled back to
  # the last good task definition.
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.api_security_group_id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.api.arn
    container_name   = local.api_container
    container_port   = var.app_port
  }

  tags = var.tags

  lifecycle {
    # Autoscaling owns the running count after creation.
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.https, aws_iam_role_policy.execution]
}
