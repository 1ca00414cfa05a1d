"""README.md's promises: its Python example runs as written; CI runs its test command."""

import os
import re
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests import helpers

README = os.path.join(helpers.REPO, "README.md")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


class ReadmeTest(absltest.TestCase):
    def test_python_example_runs_as_written(self):
        text = _read(README)
        block = re.search(
            r"<!-- python-example -->\s*```python\n(.*?)```\s*<!-- /python-example -->", text, re.S
        )
        self.assertIsNotNone(block, "README.md has no marked Python example")
        code = block.group(1)
        self.assertLessEqual(len([line for line in code.splitlines() if line.strip()]), 6)
        cwd = tempfile.mkdtemp(prefix="readme_test_")
        run = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600
        )
        self.assertEqual(run.returncode, 0, run.stderr[-3000:])
        saved = re.findall(r'\.save\("([^"]+)"\)', code)
        for path in saved:  # what the example saves is a loadable model record
            self.assertTrue(os.path.isfile(os.path.join(cwd, path, "model.json")), path)

    def test_ci_runs_the_readme_test_command(self):
        commands = re.findall(r"^pip install -e \"\.\[test\]\" && (.+)$", _read(README), re.M)
        self.assertLen(commands, 1)
        ci = _read(os.path.join(helpers.REPO, ".ci", "run"))
        self.assertIn(f"\n{commands[0]}\n", ci)

    def test_readme_is_short(self):
        self.assertLessEqual(len(_read(README).splitlines()), 200)


if __name__ == "__main__":
    absltest.main()
