# The role's permissions, one policy document per statement set, each present
# only when the configuration needs it (count). tests/terraform/test_iam.py
# reads these blocks back and checks every case.

locals {
  grant_put_metric_data  = contains(var.sinks, "cloudwatch")
  decrypt_token_with_kms = var.token.kms_key_arn != null

  # GetParameter accepts NAME:VERSION and NAME:LABEL (and ARNs ending so), but
  # IAM matches the parameter's ARN without the selector. Parameter names hold
  # no ":", so a last ":" followed by no "/" starts a selector; an ARN without
  # one ends in "parameter/NAME", which has a "/".
  token_parameter = local.token_in_ssm ? replace(var.token.ssm_parameter, "/:[^:/]+$/", "") : null

  # The name goes into the ARN without its leading slash.
  token_parameter_arn = local.token_in_ssm ? (
    startswith(local.token_parameter, "arn:") ? local.token_parameter :
    "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/${trimprefix(local.token_parameter, "/")}"
  ) : null

  # A secret's ARN ends in "-" and six random characters; given its name, the
  # ARN is matched with exactly six "?".
  token_secret_arn = local.token_in_secrets_manager ? (
    startswith(var.token.secret_id, "arn:") ? var.token.secret_id :
    "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.token.secret_id}-??????"
  ) : null

  # The key may be used only by the service that holds the token.
  token_service = local.token_in_ssm ? "ssm" : "secretsmanager"

  protected_group_arns = [
    for g in var.protected_groups :
    "arn:${local.partition}:autoscaling:${local.region}:${local.account_id}:autoScalingGroup:*:autoScalingGroupName/${g}"
  ]
}

data "aws_iam_policy_document" "assume_role" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "WriteOwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
}

data "aws_iam_policy_document" "put_metric_data" {
  count = local.grant_put_metric_data ? 1 : 0

  statement {
    sid     = "PutMetricDataInNamespace"
    actions = ["cloudwatch:PutMetricData"]
    # PutMetricData has no resource type; the namespace condition is the limit.
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.namespace]
    }
  }
}

data "aws_iam_policy_document" "token_parameter" {
  count = local.token_in_ssm ? 1 : 0

  statement {
    sid       = "ReadTokenParameter"
    actions   = ["ssm:GetParameter"]
    resources = [local.token_parameter_arn]
  }
}

data "aws_iam_policy_document" "token_secret" {
  count = local.token_in_secrets_manager ? 1 : 0

  statement {
    sid       = "ReadTokenSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.token_secret_arn]
  }
}

data "aws_iam_policy_document" "token_key" {
  count = local.decrypt_token_with_kms ? 1 : 0

  statement {
    sid       = "DecryptTokenThroughItsService"
    actions   = ["kms:Decrypt"]
    resources = [var.token.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["${local.token_service}.${local.region}.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "scale_in_protection" {
  count = local.protect_groups ? 1 : 0

  statement {
    sid       = "ProtectInstancesOfNamedGroups"
    actions   = ["autoscaling:SetInstanceProtection"]
    resources = local.protected_group_arns
  }

  # Neither action supports resource-level permissions: AWS accepts them only
  # with Resource "*". They read; the write above stays limited to the groups.
  statement {
    sid       = "FindGroupInstances"
    actions   = ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"]
    resources = ["*"]
  }
}

data "aws_iam_policy_document" "function" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.logs.json],
    data.aws_iam_policy_document.put_metric_data[*].json,
    data.aws_iam_policy_document.token_parameter[*].json,
    data.aws_iam_policy_document.token_secret[*].json,
    data.aws_iam_policy_document.token_key[*].json,
    data.aws_iam_policy_document.scale_in_protection[*].json,
  )
}

resource "aws_iam_role" "this" {
  name               = var.name
  description        = "Runs ${var.name}: reads the Drone token, publishes queue metrics"
  assume_role_policy = data.aws_iam_policy_document.assume_role.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "this" {
  name   = "queue-metrics"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.function.json
}

# Lambda creates and deletes the function's network interfaces with its role.
resource "aws_iam_role_policy_attachment" "vpc" {
  count      = var.vpc_config == null ? 0 : 1
  role       = aws_iam_role.this.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaENIManagementAccess"
}
