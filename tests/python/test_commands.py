"""The local commands as a person meets them when something is off: the stack down, a sample that
is not there, an endpoint that does not answer. Each says so in one line, and what to do.

    .venv/bin/python -m unittest discover -s tests/python -v      (from the repository root)
"""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STACK = os.path.join(ROOT, "scripts", "stack.sh")
DOWN = "the local stack is down: start it with 'make up'"


def run(*cmd, state):
    """Runs a command with its own (empty) stack state, as on a machine where nothing is up."""
    env = dict(os.environ, LOCAL_STATE=state)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


class CommandsTest(unittest.TestCase):
    def setUp(self):
        self.state = tempfile.mkdtemp(prefix="stack-state-")

    def one_line(self, out, expected):
        self.assertNotEqual(out.returncode, 0, out)
        lines = out.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, f"one line, not:\n{out.stderr}")
        self.assertIn(expected, lines[0])
        self.assertEqual(out.stdout, "")

    def test_every_command_says_the_stack_is_down(self):
        for args in (["dlq"], ["redrive", "--dry-run"], ["snapshot"], ["produce", "generate", "--orders", "1"],
                     ["invoke", "email-notifier", "order-placed"]):
            with self.subTest(args=args):
                self.one_line(run(STACK, *args, state=self.state), DOWN)

    def test_a_missing_sample_names_the_paths_tried(self):
        out = run(sys.executable, "scripts/invoke.py", "email-notifier", "order-placd", state=self.state)
        self.one_line(out, "no event file events/order-placd or events/order-placd.json; the samples are: ")
        self.assertIn("order-placed", out.stderr)

    def test_a_sample_is_found_with_or_without_json(self):
        # The sample is found; then the stack is down, which is the next thing it says.
        for name in ("order-placed", "order-placed.json"):
            with self.subTest(name=name):
                out = run(sys.executable, "scripts/invoke.py", "email-notifier", name, state=self.state)
                self.one_line(out, DOWN)

    def test_dlq_against_an_endpoint_that_does_not_answer(self):
        out = run(sys.executable, "scripts/dlq.py", "list", "--endpoint", "http://127.0.0.1:9", state=self.state)
        self.one_line(out, "cannot reach http://127.0.0.1:9; " + DOWN)


if __name__ == "__main__":
    unittest.main()
