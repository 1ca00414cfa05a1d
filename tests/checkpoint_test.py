"""Tests of the Orbax checkpoint wrapper: round trips, checksums, refusals, fallback."""

import glob
import logging as std_logging
import os
import shutil
import tempfile

import chex
import jax.numpy as jnp
from absl import logging
from absl.testing import absltest

from cgmvae_jax import checkpoint


def _trees(scale=1.0):
    state = {"w": jnp.arange(6.0).reshape(2, 3) * scale, "b": jnp.ones(3) * scale}
    best = {"w": jnp.full((2, 3), 2.0 * scale)}
    return state, best


class CheckpointerTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="checkpoint_test_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_latest_and_best_round_trip(self):
        state, best = _trees()
        with checkpoint.Checkpointer(self.dir, keep=2, owner=True) as ckpt:
            for epoch in range(3):
                ckpt.save_latest(epoch, *_trees(epoch + 1.0), {"epoch": epoch})
            ckpt.save_best(1, best, {"best_epoch": [1]})
            ckpt.wait()
            self.assertEqual(ckpt.latest_epochs(), [1, 2])  # keep=2
            restored_state, restored_best, progress = ckpt.restore_latest(state, best)
            params, info = ckpt.restore_best(best)
        chex.assert_trees_all_close(restored_state, _trees(3.0)[0])
        chex.assert_trees_all_close(restored_best, _trees(3.0)[1])
        self.assertEqual(progress, {"epoch": 2})
        chex.assert_trees_all_close(params, best)
        self.assertEqual(info, {"best_epoch": [1]})

    def test_nan_is_refused_and_nothing_is_written(self):
        state, best = _trees()
        bad = {**state, "b": state["b"].at[1].set(jnp.nan)}
        with checkpoint.Checkpointer(self.dir, owner=True) as ckpt:
            with self.assertRaisesRegex(checkpoint.NonFiniteCheckpointError, r"\['b'\]"):
                ckpt.save_latest(0, bad, best, {"epoch": 0})
            self.assertIsNone(ckpt.latest_epoch())

    def test_a_garbled_newest_checkpoint_falls_back_to_the_previous_one(self):
        state, best = _trees()
        with checkpoint.Checkpointer(self.dir, keep=3, owner=True) as ckpt:
            for epoch in range(2):
                ckpt.save_latest(epoch, *_trees(epoch + 1.0), {"epoch": epoch})
            ckpt.wait()
        # Flip bytes in every data file of epoch 1 (the arrays' chunks).
        files = [
            p
            for p in glob.glob(os.path.join(self.dir, "checkpoints/latest/1/**/*"), recursive=True)
            if os.path.isfile(p) and "d/" in p.replace(os.sep, "/")
        ]
        self.assertNotEmpty(files)
        for path in files:
            with open(path, "r+b") as f:
                content = bytearray(f.read())
                content[-8:] = bytes(255 - b for b in content[-8:])
                f.seek(0)
                f.write(content)
        with checkpoint.Checkpointer(self.dir, keep=3, owner=True) as ckpt:
            with self.assertLogs(level="WARNING"):
                restored_state, _, progress = ckpt.restore_latest(state, best)
        self.assertEqual(progress, {"epoch": 0})
        chex.assert_trees_all_close(restored_state, _trees(1.0)[0])
        self.assertTrue(os.path.isdir(os.path.join(self.dir, "checkpoints", "unreadable")))

    def test_no_best_checkpoint_is_a_file_not_found_error(self):
        with checkpoint.Checkpointer(self.dir) as ckpt:
            with self.assertRaisesRegex(FileNotFoundError, "No best checkpoint"):
                ckpt.restore_best(_trees()[1])


class QuietOrbaxTest(absltest.TestCase):
    def test_filters_live_only_inside_the_block(self):
        loggers = (logging.get_absl_logger(), std_logging.getLogger("asyncio"))
        before = [list(lg.filters) for lg in loggers]
        with checkpoint.quiet_orbax():
            grown = [len(lg.filters) - len(b) for lg, b in zip(loggers, before, strict=True)]
            self.assertEqual(grown, [1, 1])
            record = std_logging.LogRecord("x", std_logging.INFO, "/x/orbax/y.py", 1, "m", (), None)
            self.assertFalse(loggers[0].filters[-1].filter(record))
        self.assertEqual([list(lg.filters) for lg in loggers], before)


if __name__ == "__main__":
    absltest.main()
