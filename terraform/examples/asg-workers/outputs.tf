output "group_names" {
  description = "The worker Auto Scaling groups, by group."
  value       = { for key, g in aws_autoscaling_group.workers : key => g.name }
}

output "poller_function_name" {
  description = "The queue poller's Lambda function."
  value       = module.queue_metrics.function_name
}

output "poller_log_group" {
  description = "The queue poller's log group."
  value       = module.queue_metrics.log_group_name
}

output "dashboard_name" {
  description = "The CloudWatch dashboard of the fleet."
  value       = aws_cloudwatch_dashboard.fleet.dashboard_name
}
