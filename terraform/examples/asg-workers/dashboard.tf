locals {
  # A metric line of a dashboard widget: namespace, name, then the dimensions as pairs.
  metric_lines = {
    for key, g in var.groups : key => {
      for metric in ["QueuedBuilds", "StartableBuilds", "RunningBuilds", "BusyWorkers"] :
      metric => concat([var.namespace, metric], flatten([for name in sort(keys(g.labels)) : [name, g.labels[name]]]))
    }
  }

  # One row per group: its queue on the left, its workers on the right.
  dashboard_widgets = flatten([
    for row, key in sort(keys(var.groups)) : [
      {
        type   = "metric"
        x      = 0
        y      = row * 6
        width  = 12
        height = 6
        properties = {
          title  = "${key}: builds"
          region = var.region
          view   = "timeSeries"
          stat   = "Maximum"
          period = 60
          metrics = [
            local.metric_lines[key]["QueuedBuilds"],
            local.metric_lines[key]["StartableBuilds"],
            local.metric_lines[key]["RunningBuilds"],
          ]
        }
      },
      {
        type   = "metric"
        x      = 12
        y      = row * 6
        width  = 12
        height = 6
        properties = {
          title  = "${key}: workers"
          region = var.region
          view   = "timeSeries"
          stat   = "Maximum"
          period = 60
          metrics = [
            local.metric_lines[key]["BusyWorkers"],
            ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", local.group_names[key]],
            ["AWS/AutoScaling", "GroupDesiredCapacity", "AutoScalingGroupName", local.group_names[key]],
          ]
        }
      },
    ]
  ])
}

resource "aws_cloudwatch_dashboard" "fleet" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
