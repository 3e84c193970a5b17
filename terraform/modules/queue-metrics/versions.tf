terraform {
  # optional() object attributes and startswith() need 1.3; 1.5 is the
  # oldest release still commonly supported.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}
