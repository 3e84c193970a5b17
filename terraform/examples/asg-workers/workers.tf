# The runners' instance role may read their docker-compose file, nothing more.
data "aws_iam_policy_document" "runner_assume_role" {
  statement {
    sid     = "Ec2AssumesRole"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

locals {
  # The aws/ssm key decrypts it for any caller allowed GetParameter; a
  # customer-managed key would need kms:Decrypt here too.
  runner_compose_parameter_arn = "arn:${data.aws_partition.current.partition}:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter/${trimprefix(var.runner_compose_parameter, "/")}"
}

data "aws_iam_policy_document" "runner" {
  statement {
    sid       = "ReadRunnerCompose"
    actions   = ["ssm:GetParameter"]
    resources = [local.runner_compose_parameter_arn]
  }
}

resource "aws_iam_role" "runner" {
  name               = "${var.name}-runner"
  assume_role_policy = data.aws_iam_policy_document.runner_assume_role.json
}

resource "aws_iam_role_policy" "runner" {
  name   = "read-runner-compose"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}

resource "aws_iam_instance_profile" "runner" {
  name = "${var.name}-runner"
  role = aws_iam_role.runner.name
}

# Runners only connect out (to Drone, registries, git hosts, AWS APIs); no
# inbound rule at all.
resource "aws_security_group" "runner" {
  name        = "${var.name}-runner"
  description = "Drone runners: outbound only"
  vpc_id      = var.vpc_id

  egress {
    description = "Builds reach whatever their pipelines fetch"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_launch_template" "workers" {
  for_each = var.groups

  name_prefix            = "${local.group_names[each.key]}-"
  image_id               = var.ami_ids[each.key]
  instance_type          = each.value.instance_type
  vpc_security_group_ids = [aws_security_group.runner.id]
  update_default_version = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.runner.arn
  }

  user_data = base64encode(templatefile("${path.module}/user-data.sh.tftpl", {
    compose_parameter = var.runner_compose_parameter
    capacity          = each.value.capacity
    labels            = join(",", [for k in sort(keys(each.value.labels)) : "${k}:${each.value.labels[k]}"])
    gpu               = each.value.gpu
  }))

  # IMDSv2 only, and one hop: the host reads its instance id, while build
  # containers (one hop further, behind Docker's bridge) cannot reach the
  # instance role's credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = var.root_device_name
    ebs {
      volume_size           = each.value.disk_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = local.group_names[each.key] }
  }

  tag_specifications {
    resource_type = "volume"
    tags          = { Name = local.group_names[each.key] }
  }

  # Groups are added or renamed in groups; each needs its AMI. (A validation
  # of ami_ids cannot read groups before Terraform 1.9.)
  lifecycle {
    precondition {
      condition     = contains(keys(var.ami_ids), each.key)
      error_message = "ami_ids has no AMI for the group \"${each.key}\": add ${each.key} = \"ami-...\" to ami_ids."
    }
  }
}

resource "aws_autoscaling_group" "workers" {
  for_each = var.groups

  name                = local.group_names[each.key]
  min_size            = each.value.min_size
  max_size            = each.value.max_size
  vpc_zone_identifier = var.subnet_ids

  # Every new worker starts protected; the poller removes the protection once
  # the worker has been idle for the grace period. Scale-in therefore takes
  # idle workers only, whichever policy lowers the desired capacity.
  protect_from_scale_in = true

  # GroupInServiceInstances is the divisor of the target-tracking metric.
  metrics_granularity = "1Minute"
  enabled_metrics = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
  ]

  default_instance_warmup = var.instance_warmup

  launch_template {
    id      = aws_launch_template.workers[each.key].id
    version = aws_launch_template.workers[each.key].latest_version
  }

  tag {
    key                 = "Name"
    value               = local.group_names[each.key]
    propagate_at_launch = true
  }

  # The scaling policies own the desired capacity.
  lifecycle {
    ignore_changes = [desired_capacity]
  }
}
