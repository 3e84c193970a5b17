"""The asg-workers example: its scaling can only add workers or remove idle
ones, the poller protects exactly its groups, and the runners' user data
names each runner after its instance.

Evaluates terraform/examples/asg-workers (and the module as the example
calls it) with hcl_eval; runs the rendered user data with stand-in commands.
"""

import base64
import os
import stat
import subprocess
import tempfile
import textwrap
import unittest

import hcl2

from hcl_eval import Config
from test_iam import ACCOUNT, MODULE, REGION, ROOT

EXAMPLE = os.path.join(ROOT, "terraform", "examples", "asg-workers")
INSTANCE_ID = "i-0123456789abcdef0"


def example(**overrides):
    variables = {
        "region": REGION,
        "drone_server": "https://drone.example.com",
        "subnet_ids": ["subnet-1", "subnet-2"],
        "vpc_id": "vpc-1",
        "ami_ids": {"standard": "ami-std", "gpu": "ami-gpu"},
    }
    variables.update(overrides)
    return Config(EXAMPLE, variables, {
        ("aws_partition", "current"): {"partition": "aws"},
        ("aws_caller_identity", "current"): {"account_id": ACCOUNT},
    })


def raw(path):
    """The file's blocks as python-hcl2 writes them, expressions as text."""
    with open(os.path.join(EXAMPLE, path), encoding="utf-8") as f:
        return hcl2.load(f)


def resource_text(path, kind, name):
    for block in raw(path).get("resource", []):
        for k, by_name in block.items():
            if k.strip('"') == kind:
                for n, body in by_name.items():
                    if n.strip('"') == name:
                        return body
    raise KeyError(f"{kind}.{name} in {path}")


def poller(cfg):
    """The module as the example calls it."""
    return Config(MODULE, cfg.module_arguments("queue_metrics"), {
        ("aws_partition", "current"): {"partition": "aws"},
        ("aws_region", "current"): {"id": REGION},
        ("aws_caller_identity", "current"): {"account_id": ACCOUNT},
        ("aws_cloudwatch_log_group", "this"): {"arn": "arn:aws:logs:x", "name": "x"},
    })


GROUP = {"labels": {"class": "arm", "os": "linux"}, "instance_type": "c7g.xlarge", "capacity": 2,
         "min_size": 0, "max_size": 5, "disk_gb": 100, "gpu": False}


class Groups(unittest.TestCase):
    def ami_errors(self, cfg):
        return {key: cfg.precondition_errors("resource", ("aws_launch_template", "workers"), scope)
                for key, scope, _ in cfg.instances("resource", ("aws_launch_template", "workers"))}

    def test_a_group_added_with_its_ami(self):
        cfg = example(groups={"standard": dict(GROUP, labels={"class": "standard"}), "arm": GROUP},
                      ami_ids={"standard": "ami-0std", "arm": "ami-0arm", "gpu": "ami-0unused"})
        self.assertEqual(cfg.validation_errors(), {})
        self.assertEqual(self.ami_errors(cfg), {"arm": [], "standard": []})
        images = {key: cfg.attr(body, "image_id", scope)
                  for key, scope, body in cfg.instances("resource", ("aws_launch_template", "workers"))}
        self.assertEqual(images, {"arm": "ami-0arm", "standard": "ami-0std"})
        self.assertEqual(cfg.module_arguments("queue_metrics")["protected_groups"],
                         ["ci-runners-arm", "ci-runners-standard"])

    def test_a_group_without_its_ami_is_named(self):
        cfg = example(groups={"arm": GROUP}, ami_ids={"standard": "ami-0std"})
        self.assertEqual(self.ami_errors(cfg), {"arm": [
            'ami_ids has no AMI for the group "arm": add arm = "ami-..." to ami_ids.']})

    def test_ami_ids_are_ami_ids(self):
        self.assertIn("ami_ids", example(ami_ids={"standard": "ubuntu", "gpu": "ami-0gpu"}).validation_errors())


class Token(unittest.TestCase):
    def token_statements(self, cfg):
        return [s for s in poller(cfg).policy("function")["Statement"]
                if s["Sid"].startswith(("ReadToken", "DecryptToken"))]

    def test_parameter_by_default(self):
        (st,) = self.token_statements(example())
        self.assertEqual(st["Resource"], f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/drone/queue-metrics/token")

    def test_secret_with_key_and_kms_key(self):
        key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        cfg = example(drone_token_secret_id="ci/drone", drone_token_secret_key="token", drone_token_kms_key_arn=key)
        module = poller(cfg)
        self.assertEqual(module.validation_errors(), {})
        read, decrypt = self.token_statements(cfg)
        self.assertEqual(read["Resource"], f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ci/drone-??????")
        self.assertEqual(decrypt["Condition"]["StringEquals"]["kms:ViaService"], f"secretsmanager.{REGION}.amazonaws.com")
        (function,) = module.resources[("aws_lambda_function", "this")].blocks_of("environment")
        env = module.attr(function, "variables")
        self.assertEqual((env["DRONE_TOKEN_SECRET_ID"], env["DRONE_TOKEN_SECRET_KEY"]), ("ci/drone", "token"))
        self.assertNotIn("DRONE_TOKEN_SSM_PARAMETER", env)


class Protection(unittest.TestCase):
    def test_the_poller_protects_exactly_the_worker_groups(self):
        cfg = example()
        names = {key: cfg.attr(body, "name", scope)
                 for key, scope, body in cfg.instances("resource", ("aws_autoscaling_group", "workers"))}
        self.assertEqual(names, {"gpu": "ci-runners-gpu", "standard": "ci-runners-standard"})

        arguments = cfg.module_arguments("queue_metrics")
        self.assertEqual(arguments["protected_groups"], ["ci-runners-gpu", "ci-runners-standard"])
        self.assertEqual(arguments["known_groups"], [{"class": "gpu", "os": "linux"}, {"class": "standard", "os": "linux"}])
        self.assertEqual(arguments["token"], {"ssm_parameter": "/drone/queue-metrics/token", "secret_id": None,
                                              "secret_key": None, "kms_key_arn": None})

        module = poller(cfg)
        self.assertEqual(module.validation_errors(), {})
        (protect,) = [s for s in module.policy("function")["Statement"] if s["Sid"] == "ProtectInstancesOfNamedGroups"]
        self.assertEqual(protect["Resource"], [
            f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{names[k]}"
            for k in ("gpu", "standard")
        ])

    def test_workers_launch_protected_and_report_group_metrics(self):
        cfg = example()
        for key, scope, body in cfg.instances("resource", ("aws_autoscaling_group", "workers")):
            with self.subTest(group=key):
                self.assertIs(cfg.attr(body, "protect_from_scale_in", scope), True)
                self.assertIn("GroupInServiceInstances", cfg.attr(body, "enabled_metrics", scope))
                self.assertEqual(cfg.attr(body, "metrics_granularity", scope), "1Minute")

    def test_imdsv2_and_one_hop(self):
        cfg = example()
        for key, scope, body in cfg.instances("resource", ("aws_launch_template", "workers")):
            (options,) = body.blocks_of("metadata_options")
            with self.subTest(group=key):
                self.assertEqual(cfg.attr(options, "http_tokens", scope), "required")
                self.assertEqual(cfg.attr(options, "http_put_response_hop_limit", scope), 1)
                (disk,) = body.blocks_of("block_device_mappings")[0].blocks_of("ebs")
                self.assertIs(cfg.attr(disk, "encrypted", scope), True)

    def test_runner_role_reads_its_compose_file_only(self):
        self.assertEqual(example().policy("runner")["Statement"], [{
            "Sid": "ReadRunnerCompose", "Effect": "Allow", "Action": "ssm:GetParameter",
            "Resource": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/drone/runner/docker-compose",
        }])


class Scaling(unittest.TestCase):
    def test_no_alarm_acts_on_ok_or_missing_data(self):
        for path in ("scaling.tf", "workers.tf", "main.tf", "dashboard.tf"):
            for block in raw(path).get("resource", []):
                for kind, by_name in block.items():
                    if kind.strip('"') != "aws_cloudwatch_metric_alarm":
                        continue
                    for name, body in by_name.items():
                        with self.subTest(alarm=name):
                            self.assertNotIn("ok_actions", body)
                            self.assertNotIn("insufficient_data_actions", body)
                            self.assertEqual(body["alarm_actions"], ["${aws_autoscaling_policy.scale_out[each.key].arn}"])

    def test_the_alarm_scales_out_on_startable_builds_only(self):
        cfg = example()
        for key, scope, body in cfg.instances("resource", ("aws_cloudwatch_metric_alarm", "startable")):
            with self.subTest(group=key):
                self.assertEqual(cfg.attr(body, "metric_name", scope), "StartableBuilds")
                self.assertEqual(cfg.attr(body, "namespace", scope), "Drone")
                self.assertEqual(cfg.attr(body, "dimensions", scope), cfg.vars["groups"][key]["labels"])
                self.assertEqual(cfg.attr(body, "comparison_operator", scope), "GreaterThanThreshold")
                self.assertEqual(cfg.attr(body, "threshold", scope), 0)
        for key, scope, body in cfg.instances("resource", ("aws_autoscaling_policy", "scale_out")):
            steps = [cfg.attr(s, "scaling_adjustment", scope) for s in body.blocks_of("step_adjustment")]
            self.assertTrue(steps and all(s > 0 for s in steps), steps)

    def test_target_tracking_of_builds_per_worker(self):
        cfg = example()
        for key, scope, body in cfg.instances("resource", ("aws_autoscaling_policy", "builds_per_worker")):
            (tracking,) = body.blocks_of("target_tracking_configuration")
            with self.subTest(group=key):
                self.assertEqual(cfg.attr(tracking, "target_value", scope), cfg.vars["groups"][key]["capacity"])
                self.assertIs(cfg.attr(tracking, "disable_scale_in", scope), False)
                (spec,) = tracking.blocks_of("customized_metric_specification")
                queries = {cfg.attr(m, "id", scope): m for m in spec.blocks_of("metrics")}
                self.assertEqual(sorted(queries), ["builds_per_worker", "queued", "running", "workers"])
                self.assertEqual(cfg.attr(queries["builds_per_worker"], "expression", scope), "(queued + running) / workers")
                self.assertEqual([cfg.attr(m, "return_data", scope) for m in spec.blocks_of("metrics")],
                                 [False, False, False, True])
                for query, metric_name in (("queued", "QueuedBuilds"), ("running", "RunningBuilds")):
                    (metric,) = queries[query].blocks_of("metric_stat")[0].blocks_of("metric")
                    self.assertEqual(cfg.attr(metric, "metric_name", scope), metric_name)
                    self.assertEqual(cfg.attr(metric, "namespace", scope), "Drone")
                    # The dynamic block's pairs are the group's labels.
                    (dynamic,) = [b for k, labels, b in metric.blocks if k == "dynamic" and labels == ["dimensions"]]
                    pairs = cfg.attr(dynamic, "for_each", scope)
                    self.assertEqual({p["name"]: p["value"] for p in pairs}, cfg.vars["groups"][key]["labels"])
                (workers,) = queries["workers"].blocks_of("metric_stat")[0].blocks_of("metric")
                self.assertEqual(cfg.attr(workers, "metric_name", scope), "GroupInServiceInstances")

    def test_dashboard_shows_queue_running_busy_and_workers_per_group(self):
        cfg = example()
        widgets = cfg._local("dashboard_widgets")
        self.assertEqual([w["properties"]["title"] for w in widgets],
                         ["gpu: builds", "gpu: workers", "standard: builds", "standard: workers"])
        lines = [tuple(m[:2]) + tuple(m[2:]) for w in widgets for m in w["properties"]["metrics"]]
        for group in ("gpu", "standard"):
            for metric in ("QueuedBuilds", "StartableBuilds", "RunningBuilds", "BusyWorkers"):
                self.assertIn(("Drone", metric, "class", group, "os", "linux"), lines)
            self.assertIn(("AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", f"ci-runners-{group}"), lines)


class UserData(unittest.TestCase):
    """The rendered user data, run with stand-ins for curl, aws, docker,
    systemctl and nvidia-ctk that record their arguments."""

    STANDINS = {
        "curl": f"""
            case "$*" in
              *"-X PUT"*api/token*) echo imds-session ;;
              *"X-aws-ec2-metadata-token: imds-session"*meta-data/instance-id) echo {INSTANCE_ID} ;;
              *"X-aws-ec2-metadata-token: imds-session"*meta-data/placement/region) echo {REGION} ;;
              *) echo "unexpected curl $*" >&2; exit 22 ;;
            esac""",
        "aws": "echo 'services: {}'",
        "docker": ":", "systemctl": ":", "nvidia-ctk": ":",
    }

    def run_user_data(self, group):
        cfg = example()
        (_, scope, body), = [i for i in cfg.instances("resource", ("aws_launch_template", "workers")) if i[0] == group]
        script = base64.b64decode(cfg.attr(body, "user_data", scope)).decode()
        with tempfile.TemporaryDirectory() as tmp:
            bin_dir, runner_dir = os.path.join(tmp, "bin"), os.path.join(tmp, "opt")
            os.mkdir(bin_dir)
            for name, text in self.STANDINS.items():
                path = os.path.join(bin_dir, name)
                with open(path, "w") as f:
                    f.write(f'#!/bin/bash\necho "{name} $*" >>"{tmp}/calls"\n{textwrap.dedent(text)}\n')
                os.chmod(path, stat.S_IRWXU)
            self.assertIn("dir=/opt/drone-runner\n", script)
            script = script.replace("dir=/opt/drone-runner\n", f"dir={runner_dir}\n")
            result = subprocess.run(["bash", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                                    capture_output=True, text=True, timeout=30)
            self.assertEqual(result.returncode, 0, result.stderr)
            with open(os.path.join(runner_dir, ".env")) as f:
                env = f.read()
            with open(os.path.join(runner_dir, "docker-compose.yml")) as f:
                compose = f.read()
            with open(os.path.join(tmp, "calls")) as f:
                calls = [line.rstrip("\n") for line in f if not line.startswith("curl ")]
        return env, compose, [c.replace(runner_dir, "RUNNER_DIR") for c in calls]

    def test_standard_runner(self):
        env, compose, calls = self.run_user_data("standard")
        self.assertEqual(env, f"DRONE_RUNNER_NAME={INSTANCE_ID}\nDRONE_RUNNER_CAPACITY=2\n"
                              "DRONE_RUNNER_LABELS=class:standard,os:linux\n")
        self.assertEqual(compose, "services: {}\n")
        self.assertEqual(calls, [
            f"aws ssm get-parameter --region {REGION} --name /drone/runner/docker-compose --with-decryption "
            "--query Parameter.Value --output text",
            "systemctl enable docker",
            "systemctl restart docker",
            "docker compose --project-directory RUNNER_DIR up --detach",
        ])

    def test_gpu_runner_makes_nvidia_the_default_runtime_before_docker_restarts(self):
        env, _, calls = self.run_user_data("gpu")
        self.assertIn("DRONE_RUNNER_LABELS=class:gpu,os:linux\n", env)
        self.assertIn("DRONE_RUNNER_CAPACITY=1\n", env)
        self.assertEqual(calls[1:4], [
            "nvidia-ctk runtime configure --runtime=docker --set-as-default",
            "systemctl enable docker",
            "systemctl restart docker",
        ])


if __name__ == "__main__":
    unittest.main()
