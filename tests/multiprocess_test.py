"""Tests of training as several processes: two local processes train as one process does.

`launch/train.py` runs as 2 processes on this machine (subprocesses, a free port from the OS,
`JAX_PLATFORMS=cpu`, one CPU device each, gloo over the loopback interface) on
`configs/smoke.py`. The runs are shared by the tests (`setUpClass`):

* `two`: 2 processes, 3 epochs, the training split on the devices;
* `single`: one process with 2 simulated devices (`num_devices=2`, the same mesh) and with
  one device (no mesh), in one subprocess with `--xla_force_host_platform_device_count=2`;
* `resumed`: 2 processes streaming batches from the host (each process transfers its own rows),
  stopped after 2 epochs and run again with 3 on the same workdir.

Each 2-process run takes 15-30 s on two cores: process 1 always compiles (JAX reads and writes
the persistent compilation cache from process 0 only, and CPU cache keys hold the devices).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from unittest import mock

import jax
import numpy as np
from absl.testing import absltest

import cgmvae_jax
from cgmvae_jax import processes, sharding
from tests import helpers

_LAUNCH = os.path.join(helpers.REPO, "launch", "train.py")
_CONFIG = os.path.join(helpers.REPO, "configs", "smoke.py")
_TIMEOUT = 240  # seconds per run of the processes; a hang fails the test instead of blocking it

# One process, two simulated devices: the smoke run with the 2-device mesh and with one device.
_SINGLE = textwrap.dedent(
    """
    import sys
    import jax
    from cgmvae_jax import checkpoint, train
    from tests import helpers

    assert jax.device_count() == 2, jax.devices()
    for num_devices, workdir in ((2, sys.argv[1]), (1, sys.argv[2])):
        with checkpoint.quiet_orbax():
            train.train_and_evaluate(helpers.smoke_config(num_devices=num_devices), workdir)
    """
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
    }
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = helpers.REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class _Outcome:
    """Exit codes, seconds and output of the processes of one run."""

    def __init__(self, codes: list[int], seconds: float, outs: list[str], errs: list[str]):
        self.codes, self.seconds, self.outs, self.errs = codes, seconds, outs, errs

    def report(self) -> str:
        return "\n".join(
            f"--- process {i}: exit {c}\n{o[-1500:]}\n{e[-3000:]}"
            for i, (c, o, e) in enumerate(zip(self.codes, self.outs, self.errs, strict=True))
        )


def _run_processes(workdir: str, *flags: str, num_processes: int = 2) -> _Outcome:
    """Runs `launch/train.py` as `num_processes` local processes; kills them all on a hang."""
    port = _free_port()
    logs = tempfile.mkdtemp()
    procs, files = [], []
    start = time.monotonic()
    try:
        for i in range(num_processes):
            out = open(os.path.join(logs, f"out{i}"), "w+")  # noqa: SIM115 - closed below
            err = open(os.path.join(logs, f"err{i}"), "w+")  # noqa: SIM115 - closed below
            files.append((out, err))
            command = [
                sys.executable,
                _LAUNCH,
                f"--config={_CONFIG}",
                f"--workdir={workdir}",
                f"--coordinator_address=127.0.0.1:{port}",
                f"--num_processes={num_processes}",
                f"--process_id={i}",
                *flags,
            ]
            procs.append(
                subprocess.Popen(command, cwd=helpers.REPO, env=_env(), stdout=out, stderr=err)
            )
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=max(1.0, _TIMEOUT - (time.monotonic() - start))))
            except subprocess.TimeoutExpired:
                codes.append(None)
        seconds = time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    texts = []
    for out, err in files:
        pair = []
        for f in (out, err):
            f.seek(0)
            pair.append(f.read())
            f.close()
        texts.append(pair)
    shutil.rmtree(logs, ignore_errors=True)
    return _Outcome(codes, seconds, [t[0] for t in texts], [t[1] for t in texts])


def _start_single(workdir_2: str, workdir_1: str) -> subprocess.Popen:
    """Starts the one-process runs (2 devices, then 1); `_finish_single` waits for them."""
    return subprocess.Popen(
        [sys.executable, "-c", _SINGLE, workdir_2, workdir_1],
        cwd=helpers.REPO,
        env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish_single(proc: subprocess.Popen) -> None:
    try:
        _, err = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"single-process runs failed:\n{err[-4000:]}")


def _params(workdir: str) -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_flatten_with_path(cgmvae_jax.load(workdir).params)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _metrics(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def _test_metrics(workdir: str) -> dict[str, float]:
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    return {f"{p}/{k}": v for p, m in results["test"].items() for k, v in m.items()}


class TwoProcessTrainingTest(absltest.TestCase):
    """2 processes over gloo train the smoke model as one process does."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp()
        cls.dirs = {
            name: os.path.join(cls.tmp, name) for name in ("two", "single2", "single1", "resumed")
        }
        # The one-process runs overlap the first 2-process run, whose process 0 mostly waits
        # for process 1 to compile.
        single = _start_single(cls.dirs["single2"], cls.dirs["single1"])
        cls.two = _run_processes(cls.dirs["two"])
        _finish_single(single)
        streamed = ("--config.device_data_limit_mb=0",)
        cls.first = _run_processes(cls.dirs["resumed"], *streamed, "--config.num_epochs=2")
        cls.resumed = _run_processes(cls.dirs["resumed"], *streamed)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def test_both_processes_exit_zero_and_outputs_are_written_once(self):
        self.assertEqual(self.two.codes, [0, 0], self.two.report())
        workdir = self.dirs["two"]
        self.assertIn("Results of synthetic", self.two.outs[0])
        self.assertNotIn("Results of", self.two.outs[1])  # process 0 reports
        self.assertEqual([r["epoch"] for r in _metrics(workdir)], [0, 1, 2])
        for name in ("config.json", "results.json", "model"):
            self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
        self.assertFalse(os.path.exists(os.path.join(workdir, ".lock")))
        tensorboard = os.path.join(workdir, "tensorboard")
        if os.path.isdir(tensorboard):  # with the tensorboard extra: one writer
            self.assertLen(os.listdir(tensorboard), 1)
        self.assertIn("2", os.listdir(os.path.join(workdir, "checkpoints", "latest")))

    def test_parameters_and_metrics_match_one_process(self):
        self.assertEqual(self.two.codes, [0, 0], self.two.report())
        two = _params(self.dirs["two"])
        self.assertGreater(len(two), 10)
        for single in ("single2", "single1"):
            other = _params(self.dirs[single])
            self.assertLess(_max_difference(two, other), 1e-5, single)
            want, got = _test_metrics(self.dirs[single]), _test_metrics(self.dirs["two"])
            self.assertEqual(want.keys(), got.keys())
            for k in want:
                self.assertAlmostEqual(got[k], want[k], places=6, msg=f"{single} {k}")
            losses = [r["train_loss"] for r in _metrics(self.dirs[single])]
            np.testing.assert_allclose(
                [r["train_loss"] for r in _metrics(self.dirs["two"])], losses, rtol=1e-5
            )

    def test_stopped_and_resumed_streaming_run_matches_the_uninterrupted_one(self):
        self.assertEqual(self.first.codes, [0, 0], self.first.report())
        self.assertEqual(self.resumed.codes, [0, 0], self.resumed.report())
        self.assertIn("Resumed", self.resumed.errs[0])
        self.assertIn("Resumed", self.resumed.errs[1])  # both restored (the same epoch)
        workdir = self.dirs["resumed"]
        self.assertEqual([r["epoch"] for r in _metrics(workdir)], [0, 1, 2])
        self.assertLess(_max_difference(_params(workdir), _params(self.dirs["two"])), 1e-5)
        want, got = _test_metrics(self.dirs["two"]), _test_metrics(workdir)
        for k in want:
            self.assertAlmostEqual(got[k], want[k], places=6, msg=k)


class FailureTest(absltest.TestCase):
    def test_a_failure_on_process_0_stops_process_1_at_once(self):
        workdir = tempfile.mkdtemp()
        try:
            with open(os.path.join(workdir, ".lock"), "w", encoding="utf-8") as f:
                f.write(f"{socket.gethostname()} {os.getpid()}")  # held by this live process
            outcome = _run_processes(workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.assertEqual(outcome.codes, [1, 1], outcome.report())
        self.assertIn("in use by another run", outcome.errs[0])
        self.assertIn("failed on process 0", outcome.errs[1])
        self.assertLess(outcome.seconds, 60, outcome.report())


class InitializeTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        names = ("JAX_COORDINATOR_ADDRESS", sharding.NUM_PROCESSES_ENV, sharding.PROCESS_ID_ENV)
        patcher = mock.patch.dict(os.environ, {k: "" for k in names})
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_no_coordinator_is_one_process(self):
        with mock.patch.object(jax.distributed, "initialize") as initialize:
            self.assertFalse(sharding.initialize_distributed())
            self.assertFalse(sharding.initialize_distributed(num_processes=1, process_id=0))
        initialize.assert_not_called()

    def test_incomplete_settings_are_clear_errors(self):
        with mock.patch.object(jax.distributed, "initialize") as initialize:
            with self.assertRaisesRegex(ValueError, "no coordinator address"):
                sharding.initialize_distributed(num_processes=2, process_id=1)
            with self.assertRaisesRegex(ValueError, "--process_id"):
                sharding.initialize_distributed("127.0.0.1:1234", num_processes=2)
            os.environ[sharding.PROCESS_ID_ENV] = "one"
            with self.assertRaisesRegex(ValueError, "JAX_PROCESS_ID"):
                sharding.initialize_distributed("127.0.0.1:1234", num_processes=2)
        initialize.assert_not_called()

    def test_environment_gives_the_defaults(self):
        os.environ.update(
            {
                "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234",
                sharding.NUM_PROCESSES_ENV: "2",
                sharding.PROCESS_ID_ENV: "1",
            }
        )
        with mock.patch.object(jax.distributed, "initialize") as initialize:
            self.assertTrue(sharding.initialize_distributed())
        self.assertEqual(initialize.call_args.args, ("127.0.0.1:1234", 2, 1))


class OneProcessTest(absltest.TestCase):
    def test_decisions_are_local_without_collectives(self):
        self.assertEqual(processes.count(), 1)
        self.assertTrue(processes.is_primary())
        self.assertEqual(processes.any_of([True, False]), [True, False])
        processes.check_same(3, "an epoch")
        with self.assertRaisesRegex(KeyError, "boom"), processes.fail_together("a step"):
            raise KeyError("boom")


if __name__ == "__main__":
    absltest.main()
