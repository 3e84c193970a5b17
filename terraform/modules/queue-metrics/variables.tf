variable "name" {
  description = "Name of the function, its role, its schedule rule and (as /aws/lambda/NAME) its log group."
  type        = string
  default     = "drone-queue-cloudwatch"

  validation {
    # Lambda function names and IAM role names both stop at 64 characters.
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.name))
    error_message = "name must be 1 to 64 letters, digits, '-' or '_'."
  }
}

variable "drone_server" {
  description = "Base URL of the Drone server (DRONE_SERVER), e.g. https://drone.example.com, with any reverse proxy's path prefix, without /api."
  type        = string

  validation {
    condition     = can(regex("^https?://[^/?#\\s]+(/[^?#\\s]*)?$", var.drone_server)) && !can(regex("/api/?$", var.drone_server))
    error_message = "drone_server must be an http(s) URL without a query, and must not end in /api."
  }
}

variable "token" {
  description = <<-EOT
    Where the Drone admin token is kept. Set exactly one of ssm_parameter (name or ARN of a
    SecureString parameter) and secret_id (name or full ARN of a Secrets Manager secret; with
    secret_key when the secret string is JSON and the token is one of its keys). kms_key_arn is
    needed only when that parameter or secret is encrypted with a customer-managed KMS key;
    the AWS managed keys (aws/ssm, aws/secretsmanager) need no permission of the function's own.
  EOT
  type = object({
    ssm_parameter = optional(string)
    secret_id     = optional(string)
    secret_key    = optional(string)
    kms_key_arn   = optional(string)
  })

  validation {
    condition     = (var.token.ssm_parameter == null) != (var.token.secret_id == null)
    error_message = "token: set exactly one of ssm_parameter and secret_id."
  }
  validation {
    condition     = var.token.secret_key == null || var.token.secret_id != null
    error_message = "token: secret_key names a key inside a Secrets Manager secret; it needs secret_id."
  }
  validation {
    condition     = var.token.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.token.kms_key_arn))
    error_message = "token.kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), not an alias."
  }
}

variable "namespace" {
  description = "CloudWatch namespace of the metrics (CLOUDWATCH_METRICS_NAMESPACE). The role may publish to this namespace only."
  type        = string
  default     = "Drone"

  validation {
    condition     = can(regex("^[ -~]{1,255}$", var.namespace)) && !startswith(var.namespace, ":") && !startswith(var.namespace, "AWS/")
    error_message = "namespace must be 1 to 255 printable ASCII characters, not starting with ':' or 'AWS/'."
  }
}

variable "sinks" {
  description = "Where the metrics go (METRICS_SINKS): \"cloudwatch\" (PutMetricData) and/or \"emf\" (Embedded Metric Format lines in the log group). With emf alone the role gets no CloudWatch permission."
  type        = list(string)
  default     = ["cloudwatch"]

  validation {
    # prometheus and stdout need a daemon or a reader; a Lambda has neither.
    condition     = length(var.sinks) > 0 && length(distinct(var.sinks)) == length(var.sinks) && alltrue([for s in var.sinks : contains(["cloudwatch", "emf"], s)])
    error_message = "sinks must list \"cloudwatch\" and/or \"emf\", each once."
  }
}

variable "schedule_expression" {
  description = "EventBridge schedule of the polls: rate(...) or cron(...)."
  type        = string
  default     = "rate(1 minute)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be rate(...) or cron(...)."
  }
}

variable "architecture" {
  description = "Instruction set of the function: x86_64 or arm64. It must be the one the zip was built for (build/lambda.sh --arch ARCH writes drone-queue-cloudwatch-ARCH.zip)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "package" {
  description = "The zip from build/lambda.sh: a local file path (file), or an object in S3 (s3_bucket and s3_key, optionally s3_object_version)."
  type = object({
    file              = optional(string)
    s3_bucket         = optional(string)
    s3_key            = optional(string)
    s3_object_version = optional(string)
  })

  validation {
    condition     = (var.package.file != null) != (var.package.s3_bucket != null && var.package.s3_key != null)
    error_message = "package: set either file, or both s3_bucket and s3_key."
  }
  validation {
    condition     = var.package.file != null || var.package.s3_object_version == null || var.package.s3_bucket != null
    error_message = "package.s3_object_version needs s3_bucket and s3_key."
  }
}

variable "log_retention_days" {
  description = "Days the function's log group keeps its events."
  type        = number
  default     = 30

  validation {
    # The values CloudWatch Logs accepts; 0 (never expire) is left out on purpose.
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "log_kms_key_arn" {
  description = "Customer-managed KMS key to encrypt the log group with (its key policy must let CloudWatch Logs use it). null: CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "known_groups" {
  description = "Groups that publish every metric every poll, zeros included (METRICS_KNOWN_GROUPS), each as its label map, e.g. [{ class = \"gpu\", os = \"linux\" }]. Give every group that scaling policies or alarms read, so that an idle group reads 0 rather than missing data."
  type        = list(map(string))
  default     = []
}

variable "label_keys" {
  description = "Only these label keys become dimensions (METRICS_LABEL_KEYS). Empty: all keys."
  type        = list(string)
  default     = []
}

variable "protected_groups" {
  description = "Names of the Auto Scaling groups whose busy instances the function protects from scale-in (SCALE_IN_PROTECTION_GROUPS). Empty: protection off, and the role gets no Auto Scaling or EC2 permission."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.protected_groups : can(regex("^[^,:*?\\s]{1,255}$", g))])
    error_message = "protected_groups: each name must be 1 to 255 characters without ',', ':', '*', '?' or spaces."
  }
}

variable "idle_grace" {
  description = "How long an instance of a protected group must be idle before its protection is removed (SCALE_IN_PROTECTION_IDLE_GRACE, e.g. 2m). null: the product's default, 2m."
  type        = string
  default     = null

  validation {
    condition     = var.idle_grace == null || can(regex("^[0-9]+(ms|s|m|h)$", var.idle_grace))
    error_message = "idle_grace must be a duration such as 90s, 2m or 1h."
  }
}

variable "name_tag" {
  description = "EC2 tag key whose value is the runner name (SCALE_IN_PROTECTION_NAME_TAG), for runners not named after their instance id. null: not used."
  type        = string
  default     = null
}

variable "timeout" {
  description = "Seconds one poll may take. Keep it under the schedule's period so that polls never overlap."
  type        = number
  default     = 30

  validation {
    condition     = var.timeout >= 3 && var.timeout <= 900
    error_message = "timeout must be 3 to 900 seconds."
  }
}

variable "memory_size" {
  description = "Memory of the function in MB. 128 holds a queue of some 40,000 stages."
  type        = number
  default     = 128

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be 128 to 10240 MB."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of the function; 1 keeps two polls from ever running at once. null: none, as Lambda refuses any reservation in accounts whose concurrency quota is 100 or less."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrency == null || try(var.reserved_concurrency >= 1, false)
    error_message = "reserved_concurrency must be null or at least 1."
  }
}

variable "vpc_config" {
  description = "Subnets and security groups to run the function in, when Drone is reachable only inside a VPC. The subnets need a NAT gateway or a monitoring (CloudWatch) interface endpoint with the cloudwatch sink, and an SSM or Secrets Manager endpoint for the token. null: no VPC."
  type = object({
    subnet_ids         = list(string)
    security_group_ids = list(string)
  })
  default = null
}

variable "extra_environment" {
  description = "Further environment variables, e.g. { RUST_LOG = \"debug\", DRONE_TIMEOUT = \"15s\" }. Variables this module sets, and DRONE_TOKEN, are refused."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.extra_environment), [
      "DRONE_SERVER", "DRONE_TOKEN", "DRONE_TOKEN_SSM_PARAMETER", "DRONE_TOKEN_SECRET_ID", "DRONE_TOKEN_SECRET_KEY",
      "CLOUDWATCH_METRICS_NAMESPACE", "METRICS_SINKS", "METRICS_KNOWN_GROUPS", "METRICS_LABEL_KEYS",
      "SCALE_IN_PROTECTION_GROUPS", "SCALE_IN_PROTECTION_IDLE_GRACE", "SCALE_IN_PROTECTION_NAME_TAG",
    ])) == 0
    error_message = "extra_environment must not set DRONE_TOKEN (keep the token in SSM or Secrets Manager) nor a variable the module sets from its inputs."
  }
}

variable "tags" {
  description = "Tags for every resource the module creates."
  type        = map(string)
  default     = {}
}
