variable "region" {
  description = "AWS region of the fleet and the poller."
  type        = string
}

variable "name" {
  description = "Prefix of every name: each group is NAME-KEY (KEY its key in groups), the poller NAME-queue-metrics."
  type        = string
  default     = "ci-runners"
}

variable "drone_server" {
  description = "Base URL of the Drone server, e.g. https://drone.example.com."
  type        = string
}

variable "drone_token_parameter" {
  description = "Name of the SecureString parameter holding a Drone admin token, read by the poller. Not used when drone_token_secret_id is set."
  type        = string
  default     = "/drone/queue-metrics/token"
}

variable "drone_token_secret_id" {
  description = "Name or ARN of a Secrets Manager secret holding the Drone admin token, read by the poller instead of drone_token_parameter. null: the parameter."
  type        = string
  default     = null
}

variable "drone_token_secret_key" {
  description = "When the secret's string is JSON: the key holding the token, e.g. \"token\" for {\"token\": \"...\"}. Only with drone_token_secret_id."
  type        = string
  default     = null
}

variable "drone_token_kms_key_arn" {
  description = "ARN of the customer-managed KMS key the token's parameter or secret is encrypted with. null: the AWS managed key, which needs no permission of the poller's own."
  type        = string
  default     = null
}

variable "runner_compose_parameter" {
  description = "Name of the SecureString parameter holding the runners' docker-compose file (see runner-compose.example.yml); it carries the RPC secret, hence not in Terraform."
  type        = string
  default     = "/drone/runner/docker-compose"
}

variable "namespace" {
  description = "CloudWatch namespace of the queue metrics."
  type        = string
  default     = "Drone"
}

variable "lambda_zip" {
  description = "The poller's zip, as build/lambda.sh writes it."
  type        = string
  default     = "../../../target/lambda/drone-queue-cloudwatch-x86_64.zip"
}

variable "lambda_architecture" {
  description = "Architecture the zip was built for: x86_64 or arm64."
  type        = string
  default     = "x86_64"
}

variable "subnet_ids" {
  description = "Subnets of the workers. They need a way out (NAT or public IPs) to Drone, the container registries and the AWS APIs."
  type        = list(string)
}

variable "vpc_id" {
  description = "VPC of those subnets."
  type        = string
}

variable "ami_ids" {
  description = "AMI of each group, by its key in groups (standard and gpu by default), with Docker Engine and its Compose plugin, the AWS CLI and curl; those of gpu groups also with the NVIDIA driver and the NVIDIA Container Toolkit (nvidia-ctk). Every group needs one; keys of no group are ignored."
  type        = map(string)

  validation {
    condition     = alltrue([for id in values(var.ami_ids) : can(regex("^ami-[0-9a-z]+$", id))])
    error_message = "ami_ids: each value must be an AMI id (ami-...)."
  }
}

variable "groups" {
  description = <<-EOT
    The worker groups. labels: the runner's labels, which pipelines name in node: and which the
    metrics carry as dimensions; capacity: builds one worker runs at once (DRONE_RUNNER_CAPACITY),
    also the target of builds per worker; gpu: make nvidia Docker's default runtime.
  EOT
  type = map(object({
    labels        = map(string)
    instance_type = string
    capacity      = number
    min_size      = number
    max_size      = number
    disk_gb       = number
    gpu           = bool
  }))
  default = {
    standard = {
      labels        = { class = "standard", os = "linux" }
      instance_type = "c6i.xlarge"
      capacity      = 2
      min_size      = 1
      max_size      = 10
      disk_gb       = 100
      gpu           = false
    }
    gpu = {
      labels        = { class = "gpu", os = "linux" }
      instance_type = "g5.xlarge"
      capacity      = 1
      min_size      = 0
      max_size      = 4
      disk_gb       = 200
      gpu           = true
    }
  }

  validation {
    condition     = alltrue([for g in values(var.groups) : g.capacity >= 1 && g.min_size >= 0 && g.max_size >= g.min_size])
    error_message = "Each group needs capacity >= 1 and 0 <= min_size <= max_size."
  }
}

variable "instance_warmup" {
  description = "Seconds from launch until a worker's runner takes builds; scaling counts a warming worker as already there."
  type        = number
  default     = 300
}

variable "root_device_name" {
  description = "Root device of the AMIs (/dev/xvda on Amazon Linux, /dev/sda1 on Ubuntu)."
  type        = string
  default     = "/dev/xvda"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
