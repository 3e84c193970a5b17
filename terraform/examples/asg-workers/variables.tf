variable "region" {
  description = "AWS region of the fleet and the poller."
  type        = string
}

variable "name" {
  description = "Prefix of every name: the groups are NAME-standard and NAME-gpu, the poller NAME-queue-metrics."
  type        = string
  default     = "ci-runners"
}

variable "drone_server" {
  description = "Base URL of the Drone server, e.g. https://drone.example.com."
  type        = string
}

variable "drone_token_parameter" {
  description = "Name of the SecureString parameter holding a Drone admin token, read by the poller."
  type        = string
  default     = "/drone/queue-metrics/token"
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
  description = "AMI per group (keys standard and gpu), with Docker Engine and its Compose plugin, the AWS CLI and curl; the gpu one also with the NVIDIA driver and the NVIDIA Container Toolkit (nvidia-ctk)."
  type        = map(string)

  validation {
    condition     = toset(keys(var.ami_ids)) == toset(["standard", "gpu"])
    error_message = "ami_ids needs exactly the keys standard and gpu."
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
