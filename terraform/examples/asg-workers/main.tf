data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  group_names = { for key, _ in var.groups : key => "${var.name}-${key}" }
}

module "queue_metrics" {
  source = "../../modules/queue-metrics"

  name         = "${var.name}-queue-metrics"
  drone_server = var.drone_server
  namespace    = var.namespace
  architecture = var.lambda_architecture
  package      = { file = var.lambda_zip }

  # The secret when one is named, else the parameter.
  token = {
    ssm_parameter = var.drone_token_secret_id == null ? var.drone_token_parameter : null
    secret_id     = var.drone_token_secret_id
    secret_key    = var.drone_token_secret_key
    kms_key_arn   = var.drone_token_kms_key_arn
  }

  # Every group publishes every poll, zeros included, so that target tracking
  # sees an idle group as 0 builds per worker and scales it in.
  known_groups = [for key in sort(keys(var.groups)) : var.groups[key].labels]

  # The groups launch their instances protected; the poller keeps busy ones
  # protected and releases those idle for the grace period, so that a scale-in
  # can only take an idle worker.
  protected_groups = [for key in sort(keys(var.groups)) : local.group_names[key]]
}
