"""The benchmark's start (without torch it says how to install it, before compiling anything)
and its table cells."""

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


class StepTableTest(absltest.TestCase):
    _ROW = {
        "name": "yeast",
        "batch_size": 128,
        "num_features": 103,
        "num_labels": 14,
        "embedding_dim": 512,
        "scan_steps": 11,
        "jax_steps_per_sec": 80.0,
        "torch_steps_per_sec": 40.0,
        "flops_per_step": 1.0e9,
        "matmul_peak_flops": 2.0e11,
    }

    def test_guard_cost_and_ratio_bound_cells(self):
        header = step_throughput._STEP_HEADER.strip("|").split("|")
        cells = step_throughput._step_cells({**self._ROW, "guard_cost": 0.0123})
        self.assertLen(cells, len(header))
        named = dict(zip((h.strip() for h in header), cells, strict=True))
        self.assertEqual(named["guard cost"], "1.2%")
        self.assertEqual(named["ratio bound"], "5.00×")  # 2e11 / 1e9 / 40

    def test_rows_without_guard_cost_show_a_dash(self):
        header = [h.strip() for h in step_throughput._STEP_HEADER.strip("|").split("|")]
        cells = step_throughput._step_cells(self._ROW)
        self.assertEqual(cells[header.index("guard cost")], "–")


if __name__ == "__main__":
    absltest.main()
