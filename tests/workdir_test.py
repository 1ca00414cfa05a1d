"""Tests of the workdir utilities: lock, atomic files, the metrics log, resume checks."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest

from cgmvae_jax import config_lib, workdir


class _TmpTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="workdir_test_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)


class LockTest(_TmpTest):
    def test_a_live_lock_refuses_and_release_frees(self):
        first = workdir.WorkdirLock(self.dir)
        first.acquire()
        with self.assertRaisesRegex(workdir.WorkdirLockedError, f"pid {os.getpid()}"):
            workdir.WorkdirLock(self.dir).acquire()
        first.release()
        self.assertFalse(os.path.exists(os.path.join(self.dir, ".lock")))
        second = workdir.WorkdirLock(self.dir)
        second.acquire()
        self.assertTrue(second.owned)
        second.release()

    def test_a_dead_process_lock_is_taken_over(self):
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
        with open(os.path.join(self.dir, ".lock"), "w") as f:
            f.write(f"{os.uname().nodename} {dead}")
        lock = workdir.WorkdirLock(self.dir)
        with self.assertLogs(level="WARNING") as logs:
            lock.acquire()
        self.assertIn("stale lock", logs.output[0])
        with open(os.path.join(self.dir, ".lock")) as f:
            self.assertEqual(f.read().split()[1], str(os.getpid()))
        lock.release()


class FilesTest(_TmpTest):
    def test_atomic_write_replaces_and_leaves_no_temporary_file(self):
        path = os.path.join(self.dir, "results.json")
        workdir.write_json_atomic(path, {"a": 1})
        workdir.write_json_atomic(path, {"a": 2})
        self.assertEqual(workdir.read_json(path), {"a": 2})
        self.assertEqual(os.listdir(self.dir), ["results.json"])

    def test_truncate_metrics_keeps_checkpointed_epochs_and_drops_a_torn_line(self):
        path = os.path.join(self.dir, "metrics.jsonl")
        for epoch in range(4):
            workdir.append_jsonl(path, {"epoch": epoch})
        with open(path, "a") as f:
            f.write('{"epoch": 4, "trai')  # a run killed while appending
        workdir.truncate_metrics(path, 2)
        with open(path) as f:
            self.assertEqual([json.loads(line)["epoch"] for line in f], [0, 1, 2])

    def test_failed_write_names_the_file_and_the_fix(self):
        missing = os.path.join(self.dir, "no", "such", "dir", "results.json")
        with self.assertRaisesRegex(workdir.OutputWriteError, f"Could not write {missing}"):
            workdir.write_json_atomic(missing, {})

    def test_remove_if_unused_keeps_a_workdir_with_work_in_it(self):
        empty = os.path.join(self.dir, "empty")
        os.makedirs(os.path.join(empty, "checkpoints", "latest"))
        workdir.write_json_atomic(os.path.join(empty, "config.json"), {})
        workdir.remove_if_unused(empty)
        self.assertFalse(os.path.exists(empty))
        used = os.path.join(self.dir, "used")
        os.makedirs(used)
        workdir.append_jsonl(os.path.join(used, "metrics.jsonl"), {"epoch": 0})
        workdir.remove_if_unused(used)
        self.assertTrue(os.path.exists(used))


class CompatibilityTest(_TmpTest):
    def test_shape_fields_refuse_and_the_override_warns(self):
        config = config_lib.base_config()
        workdir.write_json_atomic(
            os.path.join(self.dir, "config.json"), workdir.config_dict(config)
        )
        workdir.check_config_compatible(self.dir, config)  # same config: fine
        config.num_epochs = 500  # not a shape field: fine
        workdir.check_config_compatible(self.dir, config)
        config.embedding_dim = 16
        with self.assertRaisesRegex(ValueError, r"embedding_dim: 512 \(workdir\) != 16 \(now\)"):
            workdir.check_config_compatible(self.dir, config)
        config.allow_config_change = True
        with self.assertLogs(level="WARNING"):
            workdir.check_config_compatible(self.dir, config)


if __name__ == "__main__":
    absltest.main()
