# Two policies per group, both of which may only add or remove idle workers
# (busy ones are protected by the poller):
#
# - scale_out: step scaling on StartableBuilds, for builds Drone would start
#   now and no runner takes, including the first worker of an empty group,
#   where builds per worker cannot be computed.
# - builds_per_worker: target tracking of (queued + running) / in-service
#   workers at each runner's capacity, which adds workers in proportion to
#   the load and removes them when it falls.
#
# No alarm has an OK action: a queue that drains says nothing about which
# worker is idle, and scaling in on it is what killed builds before.

locals {
  # The metric dimensions of each group: its runner labels, as published.
  dimensions = { for key, g in var.groups : key => [for name in sort(keys(g.labels)) : { name = name, value = g.labels[name] }] }
}

resource "aws_autoscaling_policy" "scale_out" {
  for_each = var.groups

  name                      = "startable-builds"
  autoscaling_group_name    = aws_autoscaling_group.workers[each.key].name
  policy_type               = "StepScaling"
  adjustment_type           = "ChangeInCapacity"
  metric_aggregation_type   = "Maximum"
  estimated_instance_warmup = var.instance_warmup

  # The alarm's threshold is 0, so the bounds are counts of startable builds.
  step_adjustment {
    metric_interval_lower_bound = 0
    metric_interval_upper_bound = 4
    scaling_adjustment          = 1
  }

  step_adjustment {
    metric_interval_lower_bound = 4
    scaling_adjustment          = 2
  }
}

resource "aws_cloudwatch_metric_alarm" "startable" {
  for_each = var.groups

  alarm_name          = "${local.group_names[each.key]}-startable-builds"
  alarm_description   = "Builds for ${each.key} workers that Drone would start now wait for a runner: add workers."
  namespace           = var.namespace
  metric_name         = "StartableBuilds"
  dimensions          = each.value.labels
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_autoscaling_policy.scale_out[each.key].arn]
}

resource "aws_autoscaling_policy" "builds_per_worker" {
  for_each = var.groups

  name                      = "builds-per-worker"
  autoscaling_group_name    = aws_autoscaling_group.workers[each.key].name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = var.instance_warmup

  target_tracking_configuration {
    target_value     = each.value.capacity
    disable_scale_in = false

    customized_metric_specification {
      metrics {
        id          = "queued"
        return_data = false
        metric_stat {
          stat = "Maximum"
          metric {
            namespace   = var.namespace
            metric_name = "QueuedBuilds"
            dynamic "dimensions" {
              for_each = local.dimensions[each.key]
              content {
                name  = dimensions.value.name
                value = dimensions.value.value
              }
            }
          }
        }
      }

      metrics {
        id          = "running"
        return_data = false
        metric_stat {
          stat = "Maximum"
          metric {
            namespace   = var.namespace
            metric_name = "RunningBuilds"
            dynamic "dimensions" {
              for_each = local.dimensions[each.key]
              content {
                name  = dimensions.value.name
                value = dimensions.value.value
              }
            }
          }
        }
      }

      metrics {
        id          = "workers"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/AutoScaling"
            metric_name = "GroupInServiceInstances"
            dimensions {
              name  = "AutoScalingGroupName"
              value = aws_autoscaling_group.workers[each.key].name
            }
          }
        }
      }

      metrics {
        id          = "builds_per_worker"
        label       = "Queued and running builds per in-service worker"
        expression  = "(queued + running) / workers"
        return_data = true
      }
    }
  }
}
