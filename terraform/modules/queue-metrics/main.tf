data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

# The region's name is its id in AWS provider 5.x and 6.x alike: name is
# deprecated in 6.x, and region, which replaces it, does not exist in 5.x.
locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id
  account_id = data.aws_caller_identity.current.account_id

  token_in_ssm             = var.token.ssm_parameter != null
  token_in_secrets_manager = var.token.secret_id != null
  protect_groups           = length(var.protected_groups) > 0

  # The metric groups as METRICS_KNOWN_GROUPS spells them; "-" is the group
  # without labels.
  known_groups = join(";", [
    for g in var.known_groups : length(g) == 0 ? "-" : join(",", [for k in sort(keys(g)) : "${k}=${g[k]}"])
  ])

  # The product reads exactly one token source; the plain DRONE_TOKEN is never set here.
  environment = merge(
    var.extra_environment,
    {
      DRONE_SERVER                 = var.drone_server
      CLOUDWATCH_METRICS_NAMESPACE = var.namespace
      METRICS_SINKS                = join(",", var.sinks)
    },
    local.token_in_ssm ? { DRONE_TOKEN_SSM_PARAMETER = var.token.ssm_parameter } : {},
    local.token_in_secrets_manager ? { DRONE_TOKEN_SECRET_ID = var.token.secret_id } : {},
    var.token.secret_key != null ? { DRONE_TOKEN_SECRET_KEY = var.token.secret_key } : {},
    length(var.known_groups) > 0 ? { METRICS_KNOWN_GROUPS = local.known_groups } : {},
    length(var.label_keys) > 0 ? { METRICS_LABEL_KEYS = join(",", var.label_keys) } : {},
    local.protect_groups ? { SCALE_IN_PROTECTION_GROUPS = join(",", var.protected_groups) } : {},
    local.protect_groups && var.idle_grace != null ? { SCALE_IN_PROTECTION_IDLE_GRACE = var.idle_grace } : {},
    local.protect_groups && var.name_tag != null ? { SCALE_IN_PROTECTION_NAME_TAG = var.name_tag } : {},
  )

  # The architecture a zip built by build/lambda.sh names in its file name
  # (drone-queue-cloudwatch-ARCH.zip); null for any other name.
  package_name = basename(coalesce(var.package.file, var.package.s3_key, "-"))
  package_arch = try(regex("^drone-queue-cloudwatch-(x86_64|arm64)\\.zip$", local.package_name)[0], null)
}

# Created here, not by Lambda on first use, so that it has a retention and the
# role needs no logs:CreateLogGroup.
resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn
  tags              = var.tags
}

resource "aws_lambda_function" "this" {
  function_name = var.name
  description   = "Publishes the Drone queue of ${var.drone_server} to CloudWatch, per runner group"
  role          = aws_iam_role.this.arn
  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.architecture]
  timeout       = var.timeout
  memory_size   = var.memory_size

  filename          = var.package.file
  source_code_hash  = var.package.file == null ? null : filebase64sha256(var.package.file)
  s3_bucket         = var.package.s3_bucket
  s3_key            = var.package.s3_key
  s3_object_version = var.package.s3_object_version

  reserved_concurrent_executions = var.reserved_concurrency

  environment {
    variables = local.environment
  }

  dynamic "vpc_config" {
    for_each = var.vpc_config == null ? [] : [var.vpc_config]
    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = vpc_config.value.security_group_ids
    }
  }

  tags = var.tags

  # The log group first, or Lambda creates it without a retention; the
  # permissions first, or the first polls fail.
  depends_on = [
    aws_cloudwatch_log_group.this,
    aws_iam_role_policy.this,
    aws_iam_role_policy_attachment.vpc,
  ]

  lifecycle {
    precondition {
      condition     = local.package_arch == null || local.package_arch == var.architecture
      error_message = "The zip is named for ${coalesce(local.package_arch, "-")} but architecture is ${var.architecture}: build it with build/lambda.sh --arch ${var.architecture}, or set architecture to match."
    }
  }
}

# A poll that failed is worth nothing a minute later: the next scheduled one
# reads the queue afresh. So no retries and no dead-letter queue; failures
# show in the function's Errors metric and its log.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}

resource "aws_cloudwatch_event_rule" "schedule" {
  name                = var.name
  description         = "Polls the Drone queue for ${var.name}"
  schedule_expression = var.schedule_expression
  tags                = var.tags
}

resource "aws_cloudwatch_event_target" "function" {
  rule      = aws_cloudwatch_event_rule.schedule.name
  target_id = "poll"
  arn       = aws_lambda_function.this.arn

  # Delivery retries only while the next poll is not yet due.
  retry_policy {
    maximum_event_age_in_seconds = 60
    maximum_retry_attempts       = 2
  }
}

resource "aws_lambda_permission" "schedule" {
  statement_id  = "AllowScheduleRule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule.arn
}
