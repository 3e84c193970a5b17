"""check_refs.py finds what it is meant to find: each mistake below, made in a
scratch copy of terraform/, fails the check with a message naming the file
and the reference, while the real tree passes."""

import os
import shutil
import tempfile
import unittest

import check_refs
from test_iam import ROOT

TERRAFORM = os.path.join(ROOT, "terraform")


def problems_after(edit_file, old, new):
    """The check's problems for a copy of terraform/ with one text replaced."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "terraform")
        shutil.copytree(TERRAFORM, copy)
        path = os.path.join(copy, edit_file)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if old not in text:
            raise AssertionError(f"{old!r} not in {edit_file}")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new, 1))
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            loaded, out = {}, []
            for d in check_refs.directories("terraform"):
                out.extend(check_refs.check_directory(d, loaded))
            return out
        finally:
            os.chdir(cwd)


class References(unittest.TestCase):
    def assertOneProblem(self, problems, *parts):
        self.assertEqual(len(problems), 1, problems)
        for part in parts:
            self.assertIn(part, problems[0])

    def test_the_tree_passes(self):
        self.assertEqual(problems_after("examples/asg-workers/main.tf", "", ""), [])

    def test_undeclared_variable(self):
        self.assertOneProblem(
            problems_after("examples/asg-workers/scaling.tf",
                           "estimated_instance_warmup = var.instance_warmup",
                           "estimated_instance_warmup = var.instance_warmupp"),
            "terraform/examples/asg-workers/scaling.tf:", "var.instance_warmupp")

    def test_undeclared_resource(self):
        self.assertOneProblem(
            problems_after("examples/asg-workers/workers.tf",
                           "id      = aws_launch_template.workers[each.key].id",
                           "id      = aws_launch_template.nope[each.key].id"),
            "terraform/examples/asg-workers/workers.tf:", "aws_launch_template.nope")

    def test_undeclared_local_in_an_interpolation(self):
        self.assertOneProblem(
            problems_after("modules/queue-metrics/iam.tf", "${local.partition}:autoscaling",
                           "${local.partitoin}:autoscaling"),
            "terraform/modules/queue-metrics/iam.tf:", "local.partitoin")

    def test_undeclared_data_source(self):
        self.assertOneProblem(
            problems_after("modules/queue-metrics/iam.tf", "data.aws_iam_policy_document.logs.json",
                           "data.aws_iam_policy_document.log.json"),
            "terraform/modules/queue-metrics/iam.tf:", "data.aws_iam_policy_document.log")

    def test_resource_in_depends_on(self):
        self.assertOneProblem(
            problems_after("modules/queue-metrics/main.tf", "    aws_iam_role_policy.this,\n",
                           "    aws_iam_role_policy.that,\n"),
            "terraform/modules/queue-metrics/main.tf:", "aws_iam_role_policy.that")

    def test_module_output_and_argument(self):
        self.assertOneProblem(
            problems_after("examples/asg-workers/outputs.tf", "module.queue_metrics.function_name",
                           "module.queue_metrics.function"),
            "terraform/examples/asg-workers/outputs.tf:", "module.queue_metrics.function", "no output")
        self.assertOneProblem(
            problems_after("examples/asg-workers/main.tf", "  namespace    = var.namespace",
                           "  name_space   = var.namespace"),
            "terraform/examples/asg-workers/main.tf:", "no variable \"name_space\"")
        self.assertOneProblem(
            problems_after("examples/asg-workers/outputs.tf", "module.queue_metrics.", "module.queue_metric."),
            "terraform/examples/asg-workers/outputs.tf:", "module.queue_metric.")

    def test_heredoc_interpolation(self):
        self.assertOneProblem(
            problems_after("examples/asg-workers/outputs.tf", 'description = "The queue poller\'s log group."',
                           'description = <<-EOT\n    Logs of ${var.nmae}\n  EOT'),
            "terraform/examples/asg-workers/outputs.tf:", "var.nmae")


if __name__ == "__main__":
    unittest.main()
