"""The benchmark's start: without torch it says how to install it, before compiling anything."""

import sys
from unittest import mock

from absl import flags
from absl.testing import absltest

from benchmarks import step_throughput


class RequireTorchTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        if not flags.FLAGS.is_parsed():
            flags.FLAGS(["step_throughput_test"])

    def test_missing_torch_exits_with_the_install_line(self):
        with mock.patch.dict(sys.modules, {"torch": None}):
            with self.assertRaises(SystemExit) as cm:
                step_throughput._require_torch()
        self.assertIn("pip install torch==2.13.0", str(cm.exception.code))
        self.assertIn("--torch=none", str(cm.exception.code))

    def test_torch_none_needs_no_torch(self):
        previous = flags.FLAGS.torch
        flags.FLAGS.torch = ["none"]
        self.addCleanup(setattr, flags.FLAGS, "torch", previous)
        with mock.patch.dict(sys.modules, {"torch": None}):
            step_throughput._require_torch()  # returns: nothing to check


if __name__ == "__main__":
    absltest.main()
