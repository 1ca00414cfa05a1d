"""Fault injection: kills and signals, corrupt checkpoints, locks, bad configs, non-finite
numerics and full disks, each checked against an uninterrupted run of `configs/smoke.py`.

Runs of `launch/train.py` in subprocesses share a persistent XLA compilation cache (in a
temporary directory) with this process, so only the first run of a program pays for compiling.
Disk-full tests mount a small tmpfs when the test runs as root with mount rights, and inject
ENOSPC at the write call otherwise (both variants run when possible).
"""

import contextlib
import errno
import functools
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from flax import linen as nn

from cgmvae_jax import checkpoint, config_lib, data, layers, train
from cgmvae_jax import trainer as trainer_lib
from cgmvae_jax import workdir as workdir_lib
from tests import helpers

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TMP = ""  # a fresh temporary directory per test run (setUpModule)
_CACHE = ""  # the persistent XLA compilation cache inside it
_EPOCHS = 16  # every smoke run here trains this many epochs (one compiled program)
_TIMEOUT = 420.0  # seconds for one subprocess run: the machine is shared and slow
_TIMING = (
    "epoch_seconds",
    "samples_per_sec",
    "train_seconds",
    "steps_per_sec",
    "compile_seconds",
    "config",
)
_TMP_MARK = ".orbax-checkpoint-tmp"


def setUpModule():
    global _TMP, _CACHE
    _TMP = tempfile.mkdtemp(prefix="cgmvae_faults_")
    _CACHE = os.path.join(_TMP, "xla_cache")
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def tearDownModule():
    with contextlib.suppress(Exception):
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
        jax.config.update("jax_compilation_cache_dir", None)
    for path in glob.glob(os.path.join(_TMP, "tmpfs*")):
        subprocess.run(["umount", "-l", path], capture_output=True, check=False)
    shutil.rmtree(_TMP, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Helpers.


def _smoke(**overrides):
    """configs/smoke.py with `_EPOCHS` epochs and `overrides`."""
    return helpers.smoke_config(**{"num_epochs": _EPOCHS, **overrides})


def _env(**extra):
    env = dict(os.environ)
    env.update(
        JAX_COMPILATION_CACHE_DIR=_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        PYTHONPATH=os.pathsep.join(p for p in (_REPO, env.get("PYTHONPATH")) if p),
        JAX_PLATFORMS=env.get("JAX_PLATFORMS") or jax.default_backend(),  # the same device
    )
    env.update(extra)
    return env


class _Run:
    """`python launch/train.py ...` in a subprocess, its output captured in files."""

    def __init__(self, args, env=None):
        self._out = tempfile.TemporaryFile(dir=_TMP)
        self._err = tempfile.TemporaryFile(dir=_TMP)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join("launch", "train.py"), *args],
            cwd=_REPO,
            env=env or _env(),
            stdout=self._out,
            stderr=self._err,
        )
        self.pid = self.proc.pid

    @classmethod
    def smoke(cls, workdir, *args):
        return cls(
            [
                "--config=configs/smoke.py",
                f"--workdir={workdir}",
                f"--config.num_epochs={_EPOCHS}",
                *args,
            ]
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, sig) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout=_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"launch/train.py still running after {timeout} s:\n{self.err}"
            ) from e

    def _read(self, f) -> str:
        f.seek(0)
        return f.read().decode("utf-8", "replace")

    @property
    def out(self) -> str:
        return self._read(self._out)

    @property
    def err(self) -> str:
        return self._read(self._err)


def _complete(workdir, kind="latest") -> list[int]:
    """Epochs of the finished checkpoints on disk."""
    try:
        return sorted(
            int(n) for n in os.listdir(os.path.join(workdir, "checkpoints", kind)) if n.isdigit()
        )
    except FileNotFoundError:
        return []


def _saving(workdir) -> bool:
    """True while a checkpoint is being written (orbax's temporary directory exists)."""
    for kind in ("latest", "best"):
        with contextlib.suppress(FileNotFoundError):
            if any(_TMP_MARK in n for n in os.listdir(os.path.join(workdir, "checkpoints", kind))):
                return True
    return False


def _poll(predicate, run, timeout=_TIMEOUT, interval=0.01) -> bool:
    """Waits until `predicate()` holds (True) or the run ends or times out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if not run.alive():
            return predicate()
        time.sleep(interval)
    return False


@functools.cache
def _reference() -> str:
    """Workdir of an uninterrupted smoke run (a subprocess, as the interrupted runs)."""
    workdir = os.path.join(_TMP, "reference")
    run = _Run.smoke(workdir, f"--config.keep_checkpoints={_EPOCHS}")
    rc = run.wait()
    assert rc == 0, run.err
    return workdir


def _copy_reference(name) -> str:
    workdir = os.path.join(_TMP, name)
    shutil.copytree(_reference(), workdir)
    return workdir


@functools.cache
def _template():
    """A train state of the smoke config: the structure to restore checkpoints into."""
    config = _smoke()
    _, splits = data.load_from_config(config)
    trainer = train.Trainer(
        config, splits.train_x.shape[1], splits.train_y.shape[1], splits.train_x.shape[0]
    )
    return trainer.init_state()


def _restore(workdir, epoch=None, owner=False):
    """(state, best_params, progress) of the newest (or `epoch`'s) latest checkpoint."""
    state = _template()
    with checkpoint.Checkpointer(workdir, owner=owner) as ckpt:
        return ckpt.restore_latest(state, state.params, epoch=epoch)


def _restore_best(workdir):
    with checkpoint.Checkpointer(workdir) as ckpt:
        return ckpt.restore_best(_template().params)


def _results(workdir) -> dict:
    with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
        return {k: v for k, v in json.load(f).items() if k not in _TIMING}


def _metrics(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [{k: v for k, v in json.loads(line).items() if k not in _TIMING} for line in f]


def _leaves(tree) -> list[tuple[str, np.ndarray]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(jax.tree_util.keystr(p), np.asarray(v)) for p, v in flat]


@contextlib.contextmanager
def _tmpfs(size: str):
    """A fresh tmpfs of `size` (yields its path), or None when mounting is not possible."""
    path = tempfile.mkdtemp(prefix="tmpfs", dir=_TMP)
    mounted = (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", path], capture_output=True, check=False)


def _fill(directory, leave_pages=0) -> str:
    """Fills the file system of `directory` up, leaving `leave_pages` 4 KiB pages free."""
    ballast = os.path.join(directory, "ballast")
    with open(ballast, "wb", buffering=0) as f:
        for chunk in (b"\0" * 65536, b"\0" * 4096):
            with contextlib.suppress(OSError):
                while f.write(chunk) == len(chunk):
                    pass
    pages = -(-os.path.getsize(ballast) // 4096)
    os.truncate(ballast, max(pages - leave_pages, 0) * 4096)
    return ballast


class _KeepFull:
    """Context manager: a thread appends to `ballast` whenever the file system has room."""

    def __init__(self, ballast: str):
        self._ballast, self._stop = ballast, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with open(self._ballast, "ab", buffering=0) as f:
            while not self._stop.is_set():
                with contextlib.suppress(OSError):
                    while f.write(b"\0" * 4096) == 4096:
                        pass
                time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class _FaultTestCase(parameterized.TestCase):
    def assertTreesEqual(self, a, b):
        la, lb = _leaves(a), _leaves(b)
        self.assertEqual([p for p, _ in la], [p for p, _ in lb])
        for (path, x), (_, y) in zip(la, lb, strict=True):
            np.testing.assert_array_equal(x, y, err_msg=path)

    def assertAllFinite(self, tree, what):
        for path, x in _leaves(tree):
            if np.issubdtype(x.dtype, np.inexact):
                self.assertTrue(np.all(np.isfinite(x)), f"{what}{path} has NaN/inf")

    def assertSameRun(self, workdir, reference):
        """Same results.json (but timings), metrics.jsonl and final checkpoints."""
        self.assertEqual(_results(workdir), _results(reference))
        self.assertEqual(_metrics(workdir), _metrics(reference))
        self.assertEqual([m["epoch"] for m in _metrics(workdir)], list(range(_EPOCHS)))
        state, best, progress = _restore(workdir)
        ref_state, ref_best, ref_progress = _restore(reference)
        self.assertEqual(progress["epoch"], _EPOCHS - 1)
        self.assertEqual(progress["best_epoch"], ref_progress["best_epoch"])
        self.assertTreesEqual(state, ref_state)
        self.assertTreesEqual(best, ref_best)
        self.assertTreesEqual(_restore_best(workdir)[0], _restore_best(reference)[0])
        leftovers = glob.glob(os.path.join(workdir, "**", f"*{_TMP_MARK}*"), recursive=True)
        self.assertEqual(leftovers, [])
        self.assertFalse(os.path.exists(os.path.join(workdir, ".lock")))
        self.assertEqual(glob.glob(os.path.join(workdir, "*.tmp.*")), [])


# --------------------------------------------------------------------------------------------
# 1. Interruption.


class InterruptionTest(_FaultTestCase):
    def test_kills_signals_and_full_disk_resume_to_the_uninterrupted_result(self):
        with _tmpfs("16m") as mount:
            self._interrupt_and_resume(mount)

    def _interrupt_and_resume(self, mount):
        reference = _reference()
        epoch_s = float(
            np.median(
                [
                    json.loads(line)["epoch_seconds"]
                    for line in open(os.path.join(reference, "metrics.jsonl"))
                ][1:]
            )
        )
        workdir = os.path.join(mount or _TMP, "interrupted")
        # Seeded kill points (the same every run); CGMVAE_FAULTS_SEED=<seed> tries others.
        seed = int(os.environ.get("CGMVAE_FAULTS_SEED", "0"))
        rng = np.random.default_rng(seed)
        log = [f"kill-point seed {seed}"]

        def new_checkpoint(before):
            return lambda: bool(_complete(workdir)) and max(_complete(workdir)) > before

        def last():
            return max(_complete(workdir), default=-1)

        # 1. SIGKILL at a random point after the first checkpoint; meanwhile, a second run on
        #    the same workdir is refused by the lock.
        run = _Run.smoke(workdir)
        self.assertTrue(_poll(new_checkpoint(-1), run), run.err)
        with self.assertRaisesRegex(
            train.WorkdirLockedError, rf"pid {run.pid}\b.*another --workdir"
        ):
            # An incompatible seed: if the lock failed, this would stop before training.
            train.train_and_evaluate(_smoke(seed=99), workdir)
        time.sleep(rng.uniform(0.0, 3.0) * epoch_s)
        self.assertTrue(run.alive())
        run.send(signal.SIGKILL)
        self.assertEqual(run.wait(), -signal.SIGKILL)
        log.append(f"SIGKILL after a random delay: killed with checkpoints up to epoch {last()}")
        self.assertTrue(os.path.exists(os.path.join(workdir, ".lock")))  # left by the kill

        # 2. SIGKILL during a checkpoint save (orbax's temporary directory on disk).
        for attempt in range(4):
            before = last()
            run = _Run.smoke(workdir)
            self.assertTrue(_poll(new_checkpoint(before), run), run.err)
            if attempt == 0:
                self.assertIn("Removing stale lock", run.err)  # the killed run's lock
            self.assertTrue(_poll(lambda: _saving(workdir), run, interval=0.0002))
            run.send(signal.SIGKILL)
            self.assertEqual(run.wait(), -signal.SIGKILL)
            if _saving(workdir):
                break
        else:
            self.fail("never killed a run while a checkpoint was being written")
        partial = sorted(
            n
            for k in ("latest", "best")
            for n in os.listdir(os.path.join(workdir, "checkpoints", k))
            if _TMP_MARK in n
        )
        log.append(
            f"SIGKILL during a checkpoint save (attempt {attempt + 1}): left {partial}, "
            f"complete checkpoints up to epoch {last()}"
        )

        # 3./4. SIGTERM and SIGINT: exit 0 after writing a checkpoint, saying how to resume.
        startup = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            before = last()
            start = time.monotonic()
            run = _Run.smoke(workdir)
            self.assertTrue(_poll(new_checkpoint(before), run), run.err)
            startup.append(time.monotonic() - start)
            time.sleep(rng.uniform(0.0, 1.0) * epoch_s)
            self.assertTrue(run.alive())
            run.send(sig)
            self.assertEqual(run.wait(), 0, run.err)
            self.assertIn(f"Stopped by {sig.name}", run.err)
            self.assertIn("Run the same command again to resume", run.err)
            self.assertNotIn("Traceback", run.err)
            self.assertFalse(os.path.exists(os.path.join(workdir, ".lock")))
            self.assertIn(f"the latest checkpoint holds epoch {last()}", run.err)
            self.assertFalse(os.path.exists(os.path.join(workdir, "results.json")))
            log.append(f"{sig.name}: exit 0, checkpoint of epoch {last()}, resume message")

        # 5. The disk (a small tmpfs) fills up during training: a one-line error, and the
        #    complete checkpoints stay readable (the final comparison shows it).
        if mount is not None:
            before = last()
            run = _Run.smoke(workdir)
            self.assertTrue(_poll(new_checkpoint(before), run), run.err)
            ballast = _fill(mount)
            # The run frees pages when it drops old checkpoints; keep the disk full until the
            # run stops, so that the test does not depend on when the fill happened.
            with _KeepFull(ballast):
                self.assertEqual(run.wait(), 1, run.err)
            errors = [x for x in run.err.splitlines() if x.startswith("error: ")]
            self.assertLen(errors, 1, run.err)
            self.assertRegex(errors[0], "disk is full|No space left on device")
            self.assertIn("Free disk space", errors[0])
            self.assertIn("run the same command again", errors[0])
            self.assertFalse(os.path.exists(os.path.join(workdir, ".lock")))
            os.remove(ballast)
            log.append(f"disk full (tmpfs): exit 1, {errors[0][:220]}...")
        else:
            log.append("disk full: no tmpfs can be mounted here (DiskFullTest injects ENOSPC)")

        # 6. SIGKILL at a random time before the run's first checkpoint (start-up, restore).
        run = _Run.smoke(workdir)
        time.sleep(rng.uniform(0.2, 0.9) * min(startup))
        self.assertTrue(run.alive())
        run.send(signal.SIGKILL)
        self.assertEqual(run.wait(), -signal.SIGKILL)
        log.append(f"SIGKILL during start-up: checkpoints up to epoch {last()}")

        # Final resume to the end: identical to the uninterrupted run.
        self.assertLess(last(), _EPOCHS - 1)
        run = _Run.smoke(workdir)
        self.assertEqual(run.wait(), 0, run.err)
        self.assertIn("Results of synthetic", run.out)
        self.assertSameRun(workdir, reference)
        log.append("final resume: results.json, metrics.jsonl, latest and best checkpoints equal")
        print("\n".join(["", "Interruption faults:", *log]), file=sys.stderr)


# --------------------------------------------------------------------------------------------
# 2. Corrupt state, incompatible configs, locks.


def _largest_file(directory):
    files = [
        f for f in glob.glob(os.path.join(directory, "**"), recursive=True) if os.path.isfile(f)
    ]
    return max(files, key=os.path.getsize)


def _garble_array_bytes(checkpoint_dir):
    # A few bytes at eight places of the largest array file: orbax reads it without complaint.
    # Several places, so that some hit array data whatever the file's internal layout.
    path = _largest_file(os.path.join(checkpoint_dir, "state"))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        for k in range(1, 9):
            f.seek(size * k // 9)
            chunk = f.read(8)
            f.seek(size * k // 9)
            f.write(bytes(b ^ 0xFF for b in chunk))


def _truncate_array_file(checkpoint_dir):
    path = _largest_file(os.path.join(checkpoint_dir, "state"))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _garble_progress(checkpoint_dir):
    with open(os.path.join(checkpoint_dir, "progress", "metadata"), "w") as f:
        f.write('{"epoch": 15, "best_epo')


def _empty_every_file(checkpoint_dir):
    for path in glob.glob(os.path.join(checkpoint_dir, "**"), recursive=True):
        if os.path.isfile(path):
            open(path, "wb").close()


def _delete_state_item(checkpoint_dir):
    shutil.rmtree(os.path.join(checkpoint_dir, "state"))


class CorruptStateTest(_FaultTestCase):
    def _corrupt_copy(self, corrupt) -> str:
        workdir = _copy_reference_trimmed(os.path.join(_TMP, f"corrupt_{corrupt.__name__}"))
        corrupt(os.path.join(workdir, "checkpoints", "latest", str(_EPOCHS - 1)))
        return workdir

    @parameterized.named_parameters(
        ("garbled_array_bytes", _garble_array_bytes),  # read without error: the checksum tells
        ("truncated_array_file", _truncate_array_file),
    )
    def test_corrupt_latest_falls_back_and_training_reproduces(self, corrupt):
        workdir = self._corrupt_copy(corrupt)
        newest = _EPOCHS - 1
        os.remove(os.path.join(workdir, "results.json"))
        with open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write('{"epoch": 16, "step": 13')  # a torn line, as after a kill mid-append
        with self.assertLogs("absl", level="WARNING") as logs:
            train.train_and_evaluate(_smoke(), workdir)
        warnings = "\n".join(logs.output)
        self.assertIn(f"checkpoints/latest/{newest} could not be read", warnings)
        self.assertIn("Dropping a torn line", warnings)
        self.assertIn(
            f"Moved the unreadable checkpoint {workdir}/checkpoints/latest/{newest}", warnings
        )
        aside = os.path.join(workdir, "checkpoints", "unreadable", f"latest-{newest}")
        self.assertTrue(os.path.isdir(aside))
        self.assertSameRun(workdir, _reference())

    @parameterized.named_parameters(
        ("garbled_progress_json", _garble_progress),
        ("every_file_emptied", _empty_every_file),
        ("state_item_deleted", _delete_state_item),
    )
    def test_corrupt_latest_is_reported_and_the_previous_one_restored(self, corrupt):
        workdir = self._corrupt_copy(corrupt)
        with self.assertLogs("absl", level="WARNING") as logs:
            state, best, progress = _restore(workdir)  # a reader: nothing is moved
        self.assertIn(f"latest/{_EPOCHS - 1} could not be read", "\n".join(logs.output))
        self.assertEqual(_complete(workdir), [_EPOCHS - 2, _EPOCHS - 1])
        with self.assertLogs("absl", level="WARNING") as logs:
            state, best, progress = _restore(workdir, owner=True)  # the training run
        self.assertIn("Moved the unreadable checkpoint", "\n".join(logs.output))
        self.assertEqual(progress["epoch"], _EPOCHS - 2)
        ref_state, ref_best, _ = _restore(_reference(), _EPOCHS - 2)
        self.assertTreesEqual(state, ref_state)
        self.assertTreesEqual(best, ref_best)
        self.assertEqual(_complete(workdir), [_EPOCHS - 2])

    def test_no_readable_checkpoint_is_refused(self):
        workdir = _copy_reference_trimmed(os.path.join(_TMP, "corrupt_all"))
        for epoch in _complete(workdir):
            _garble_array_bytes(os.path.join(workdir, "checkpoints", "latest", str(epoch)))
        # Depending on which bytes the garbling hits, an epoch fails its checksum or
        # TensorStore's own read (a plain Exception); either way each epoch names its error.
        with self.assertRaisesRegex(
            checkpoint.UnreadableCheckpointError,
            rf"(?s)every one failed.*epoch {_EPOCHS - 1}: \w+: .*"
            rf"epoch {_EPOCHS - 2}: \w+: .*start afresh",
        ) as raised:
            train.train_and_evaluate(_smoke(), workdir)
        self.assertNotIn("TensorStore details", str(raised.exception))
        self.assertEqual(_complete(workdir), [_EPOCHS - 2, _EPOCHS - 1])  # nothing moved

    def test_a_storage_layer_read_error_is_quoted_without_its_repr(self):
        # TensorStore raises plain Exceptions whose first line ends in a long object repr.
        workdir = _copy_reference_trimmed(os.path.join(_TMP, "tensorstore_error"))
        error = Exception(
            "Encountered error while reading array index: (slice(0, 1, 1),). "
            "See full TensorStore details: <bound method spec of TensorStore({\n  'driver': 1"
        )
        with mock.patch.object(checkpoint.Checkpointer, "_restore_latest_step", side_effect=error):
            with self.assertRaises(checkpoint.UnreadableCheckpointError) as raised:
                _restore(workdir)
        message = str(raised.exception)
        for epoch in (_EPOCHS - 1, _EPOCHS - 2):
            self.assertIn(
                f"epoch {epoch}: Exception: Encountered error while reading array index: "
                "(slice(0, 1, 1),).\n",
                message,
            )
        self.assertNotIn("TensorStore details", message)

    def test_incompatible_config_is_refused_listing_the_fields(self):
        workdir = _copy_reference("incompatible")
        before = sorted(glob.glob(os.path.join(workdir, "**"), recursive=True))
        with self.assertRaises(ValueError) as cm:
            train.train_and_evaluate(_smoke(seed=2, latent_dim=4, synthetic_features=8), workdir)
        message = str(cm.exception)
        for line in (
            "seed: 1 (workdir) != 2 (now)",
            "latent_dim: 8 (workdir) != 4 (now)",
            "synthetic_features: 16 (workdir) != 8 (now)",
        ):
            self.assertIn(line, message)
        self.assertNotIn("batch_size", message)
        self.assertIn("--config.allow_config_change=True", message)
        self.assertIn("new --workdir", message)
        self.assertEqual(sorted(glob.glob(os.path.join(workdir, "**"), recursive=True)), before)

    def test_live_lock_refuses_and_stale_lock_is_recovered(self):
        workdir = _copy_reference("locks")
        lock = os.path.join(workdir, ".lock")
        for owner in (f"{socket.gethostname()} {os.getpid()}", "another-host 12345"):
            with open(lock, "w") as f:
                f.write(owner)
            with self.assertRaisesRegex(
                train.WorkdirLockedError, f"pid {owner.split()[1]};.*another --workdir"
            ):
                train.train_and_evaluate(_smoke(), workdir)
            self.assertTrue(os.path.exists(lock))
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        with open(lock, "w") as f:
            f.write(f"{socket.gethostname()} {dead.pid}")
        with self.assertLogs("absl", level="WARNING") as logs:
            results = train.train_and_evaluate(_smoke(), workdir)
        self.assertIn(
            f"Removing stale lock {lock} (pid {dead.pid} is gone)", "\n".join(logs.output)
        )
        self.assertEqual(
            {k: v for k, v in results.items() if k not in _TIMING}, _results(_reference())
        )
        self.assertFalse(os.path.exists(lock))


# --------------------------------------------------------------------------------------------
# 3. Numerics.


def _poisoned_dataset(value: float, split: str = "train"):
    """The smoke data with the features of one row of `split` set to `value` (saved as npz).

    Returns:
      (data_dir, name, row): the row's index in the split (never 0, the index that pads the
      last training batch).
    """
    config = _smoke()
    dataset, _ = data.load_from_config(config)
    data_dir = os.path.join(_TMP, f"poisoned_{split}_{value:g}")
    os.makedirs(data_dir, exist_ok=True)
    for row in range(1, dataset.x.shape[0]):
        x = np.array(dataset.x, np.float32)
        x[row] = value
        np.savez(os.path.join(data_dir, "poisoned.npz"), X=x, Y=dataset.y)
        _, splits = data.load_from_config(
            _smoke(dataset="poisoned", data_dir=data_dir, standardize=False)
        )
        hits = np.nonzero(np.abs(getattr(splits, f"{split}_x")).max(axis=1) >= value)[0]
        if len(hits) == 1 and hits[0] != 0:
            return data_dir, "poisoned", int(hits[0])
    raise AssertionError(f"no row lands in the {split} split")


def _steps_with_row(row: int) -> list[int]:
    """Per epoch, the 1-based global step whose batch holds training row `row`."""
    config = _smoke()
    _, splits = data.load_from_config(config)
    trainer = train.Trainer(
        config, splits.train_x.shape[1], splits.train_y.shape[1], splits.train_x.shape[0]
    )
    steps = []
    for epoch in range(_EPOCHS):
        indices, weights = (np.asarray(a)[0] for a in trainer.epoch_batches(epoch))  # [steps, B]
        (step,) = np.nonzero(((indices == row) & (weights > 0)).any(axis=1))[0]
        steps.append(epoch * trainer.steps_per_epoch + int(step) + 1)
    return steps


class NumericsTest(_FaultTestCase):
    def _assert_checkpoints_finite(self, workdir, expected_epochs=None):
        epochs = _complete(workdir)
        if expected_epochs is not None:
            self.assertEqual(epochs, expected_epochs)
        for epoch in epochs:
            state, best, _ = _restore(workdir, epoch)
            self.assertAllFinite(state, f"latest/{epoch} state")
            self.assertAllFinite(best, f"latest/{epoch} best_params")
        if _complete(workdir, "best"):
            self.assertAllFinite(_restore_best(workdir)[0], "best")
        return epochs

    def test_nonfinite_loss_stops_or_is_skipped(self):
        # A training row with features of 1e30 (standardize=False) overflows the KL term.
        data_dir, name, row = _poisoned_dataset(1e30)
        steps = _steps_with_row(row)
        poisoned = dict(dataset=name, data_dir=data_dir, standardize=False)
        term_names = ("bce_label", "bce_feat", "bce_feat2", "kl", "contrastive")

        def assert_names_step(message, epoch, latest):
            self.assertRegex(
                message,
                rf"^Non-finite value at step {steps[epoch]} \(epoch {epoch}, seed 1\): "
                r"([a-z_0-9]+, )*loss(, [a-z_0-9]+)* is NaN/inf \(",
            )
            named = message.split("): ")[1].split(" is NaN/inf")[0].split(", ")
            self.assertTrue(set(named) & set(term_names), named)  # a loss term is named
            self.assertIn(latest, message)
            self.assertIn("--config.skip_nonfinite=True", message)

        # Stop at the first bad step: nothing saved yet.
        workdir = os.path.join(_TMP, "nonfinite_stop")
        with self.assertRaises(train.NonFiniteError) as cm:
            train.train_and_evaluate(_smoke(**poisoned), workdir)
        assert_names_step(str(cm.exception), 0, "no checkpoint was written yet")
        self.assertEqual(_complete(workdir), [])
        self.assertFalse(os.path.exists(os.path.join(workdir, ".lock")))

        # skip_nonfinite: one skipped update per epoch, counted in metrics.jsonl.
        skipping = os.path.join(_TMP, "nonfinite_skip")
        results = train.train_and_evaluate(
            _smoke(skip_nonfinite=True, keep_checkpoints=_EPOCHS, **poisoned), skipping
        )
        self.assertEqual(results["skipped_steps"], _EPOCHS)
        records = _metrics(skipping)
        self.assertEqual([m["skipped_steps"] for m in records], list(range(1, _EPOCHS + 1)))
        self._assert_checkpoints_finite(skipping, list(range(_EPOCHS)))

        # Without skipping, resumed after epoch 1: stops in epoch 2, epoch 1 stays the latest.
        resumed = os.path.join(_TMP, "nonfinite_resumed")
        shutil.copytree(skipping, resumed)
        os.remove(os.path.join(resumed, "results.json"))
        for kind in ("latest", "best"):
            for epoch in _complete(resumed, kind):
                if epoch > 1:
                    shutil.rmtree(os.path.join(resumed, "checkpoints", kind, str(epoch)))
        with self.assertRaises(train.NonFiniteError) as cm:
            train.train_and_evaluate(_smoke(keep_checkpoints=_EPOCHS, **poisoned), resumed)
        assert_names_step(str(cm.exception), 2, "the latest checkpoint holds epoch 1")
        self._assert_checkpoints_finite(resumed, [0, 1])
        self.assertEqual([m["epoch"] for m in _metrics(resumed)], [0, 1])
        print(f"\nNon-finite loss: {str(cm.exception)[:150]}...", file=sys.stderr)

    def test_nonfinite_predictions_stop_with_the_row(self):
        # A validation row with features of 3e38 overflows the forward pass: its
        # probabilities are NaN, so the validation metrics cannot be computed.
        data_dir, name, row = _poisoned_dataset(3e38, "val")
        workdir = os.path.join(_TMP, "nonfinite_predictions")
        config = _smoke(dataset=name, data_dir=data_dir, standardize=False)
        with self.assertRaises(train.NonFiniteError) as cm:
            train.train_and_evaluate(config, workdir)
        message = str(cm.exception)
        # When the overflow turns into NaN (inf - inf) depends on the weights: some epoch.
        epoch = int(message.split("parameters of epoch ")[1].split(" ")[0])
        latest = (
            "No checkpoint was written yet."
            if epoch == 0
            else f"The latest checkpoint holds epoch {epoch - 1}."
        )
        self.assertEqual(
            message,
            f"Non-finite predictions on the validation split with the parameters of epoch {epoch} "
            f"(seed 1): 1 row(s), the first is row {row}. Their features are probably too "
            f"large for float32 arithmetic: use --config.standardize=True or rescale the data. "
            + latest,
        )
        self.assertEqual(max(_complete(workdir), default=-1), epoch - 1)
        self._assert_checkpoints_finite(workdir)

    @parameterized.named_parameters(
        # The loss is finite; its gradient is NaN (d sqrt(u) / du at u = 0, times 0).
        ("nan_gradient", lambda: optax.adam(1e-3), lambda out: 0.0 * jnp.sqrt(0.0 * jnp.sum(out))),
        # Loss and gradients are finite; Adam's second moment (gradient squared) overflows.
        ("adam_moment_overflow", lambda: optax.adam(1e-3), lambda out: 1e20 * jnp.sum(out)),
        # Loss and gradients are finite; the parameter update overflows.
        ("parameter_overflow", lambda: optax.sgd(1e38), lambda out: jnp.sum(out)),
    )
    def test_bad_update_is_not_applied(self, make_tx, loss):
        class Tiny(nn.Module):
            @nn.compact
            def __call__(self, x, y, train=False):
                del y, train
                return nn.Dense(3)(x)

        model = Tiny()
        x, y = jnp.ones((4, 5)), jnp.ones((4, 3))
        params = model.init(jax.random.key(0), x, y)["params"]
        state = train.TrainState.create(apply_fn=model.apply, params=params, tx=make_tx())

        def loss_fn(outputs, labels, weights, *, epoch):
            del labels, weights, epoch
            value = loss(outputs)
            return value, {"term": value}

        new_state, m = trainer_lib.train_step(
            state, x, y, jnp.ones((4,)), jax.random.key(1), loss_fn=loss_fn
        )
        self.assertFalse(bool(m["finite"]))
        self.assertTrue(bool(jnp.isfinite(m["loss"])))
        self.assertTreesEqual(new_state.params, state.params)
        self.assertTreesEqual(new_state.opt_state, state.opt_state)
        self.assertEqual(int(new_state.step), 1)  # the step is counted, the update dropped

    def test_extreme_features_and_learning_rates_never_save_nan(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(300, 16)).astype(np.float32)
        x[:, :8] = np.where(rng.random((300, 8)) < 0.5, 1e6, -1e6)
        y = (rng.random((300, 6)) < 0.3).astype(np.uint8)
        y[np.arange(300), rng.integers(0, 6, 300)] = 1
        data_dir = os.path.join(_TMP, "extreme_data")
        os.makedirs(data_dir)
        np.savez(os.path.join(data_dir, "extreme.npz"), X=x, Y=y)
        base = dict(dataset="extreme", data_dir=data_dir, standardize=False)
        outcomes = []
        for name, overrides in (
            ("features 1e6/-1e6", dict(keep_checkpoints=_EPOCHS)),
            ("lr 1e3", dict(num_epochs=4, keep_checkpoints=4, learning_rate=1e3)),
            (
                "lr 1e3, skip_nonfinite",
                dict(num_epochs=4, keep_checkpoints=4, learning_rate=1e3, skip_nonfinite=True),
            ),
        ):
            workdir = os.path.join(_TMP, "extreme_" + name.replace(" ", "_").replace(",", ""))
            try:
                results = train.train_and_evaluate(_smoke(**base, **overrides), workdir)
                outcome = f"finished, {results.get('skipped_steps', 0)} skipped updates"
                if overrides.get("skip_nonfinite"):
                    self.assertTrue(all(np.isfinite(v) for v in results["test"]["fixed"].values()))
            except train.NonFiniteError as e:
                self.assertFalse(overrides.get("skip_nonfinite"))
                self.assertRegex(str(e), r"Non-finite value at step \d+ \(epoch \d+, seed 1\): ")
                outcome = f"stopped: {str(e).split(' (')[0]}"
            epochs = self._assert_checkpoints_finite(workdir)
            self.assertNotEqual(epochs, [])
            outcomes.append(f"{name}: {outcome}; {len(epochs)} saved checkpoints, all finite")
        print("\nExtreme inputs:\n" + "\n".join(outcomes), file=sys.stderr)

    def test_log_variance_soft_clamp_keeps_exp_finite(self):
        v = jnp.array([-1e30, -1e6, -40.0, 0.0, 1e-3, 40.0, 1e6, 1e30], jnp.float32)
        clamped = layers.soft_clamp(v, 30.0)
        self.assertTrue(bool(jnp.all(jnp.abs(clamped) <= 30.0)))
        self.assertTrue(bool(jnp.all(jnp.isfinite(jnp.exp(clamped)))))
        self.assertTrue(bool(jnp.all(jnp.isfinite(jnp.exp(-clamped)))))
        np.testing.assert_allclose(clamped[3:5], v[3:5], rtol=1e-6)
        grad = jax.grad(lambda u: jnp.sum(jnp.exp(layers.soft_clamp(u, 30.0))))(v)
        self.assertTrue(bool(jnp.all(jnp.isfinite(grad))))


# --------------------------------------------------------------------------------------------
# 4. Config validation.


class ConfigValidationTest(_FaultTestCase):
    @parameterized.parameters(
        ("batch_size", 0, "must be a positive integer"),
        ("latent_dim", -4, "must be a positive integer"),
        ("embedding_dim", 0, "must be a positive integer"),
        ("num_epochs", -1, "must be a positive integer"),
        ("feature_hidden", (32, 0), "every hidden size must be positive"),
        ("train_fraction", 0.0, "must be in (0, 1]"),
        ("train_fraction", 1.5, "must be in (0, 1]"),
        ("val_fraction", 0.0, "must be in (0, 1)"),
        ("test_fraction", 1.0, "must be in (0, 1)"),
        ("temperature", 0.0, "must be > 0"),
        ("temperature", -1.0, "must be > 0"),
        ("learning_rate", 0.0, "must be > 0"),
        ("prior", "gaussian", "must be one of mixture, unimodal"),
        ("model", "transformer", "must be one of cgmvae, mlp"),
        ("loss", "focal", "must be one of bce, asl"),
    )
    def test_bad_value_is_a_one_line_error_with_the_fix(self, field, value, fix):
        config = config_lib.base_config()
        config[field] = value
        with self.assertRaises(ValueError) as cm:
            config_lib.validate(config)
        lines = str(cm.exception).splitlines()
        self.assertEqual(lines[0], "Invalid config:")
        mine = [x.strip() for x in lines[1:] if x.strip().startswith(f"--config.{field}=")]
        self.assertLen(mine, 1)
        self.assertIn(fix, mine[0])

    def test_unknown_field_suggests_the_known_one(self):
        config = config_lib.base_config()
        config.learning_rat = 0.1
        with self.assertRaisesRegex(
            ValueError,
            r"--config.learning_rat: unknown field; did you mean --config.learning_rate\?",
        ):
            config_lib.validate(config)

    def test_batch_size_larger_than_training_split(self):
        workdir = os.path.join(_TMP, "big_batch")
        with self.assertRaisesRegex(
            ValueError,
            r"--config.batch_size=1000 is larger than the training split \(240 rows.*"
            r"use --config.batch_size=60 or less",
        ):
            train.train_and_evaluate(_smoke(batch_size=1000), workdir)
        self.assertFalse(os.path.exists(os.path.join(workdir, "checkpoints")))

    def test_missing_data_dir_is_reported_as_such(self):
        data_dir = os.path.join(_TMP, "no_such_dir")
        with self.assertRaises(data.DatasetNotFoundError) as cm:
            train.train_and_evaluate(
                _smoke(dataset="nus_vec", data_dir=data_dir), os.path.join(_TMP, "no_data")
            )
        self.assertIn(f"data_dir {data_dir} does not exist", str(cm.exception))
        self.assertIn("--config.data_dir", str(cm.exception))
        self.assertFalse(os.path.exists(os.path.join(_TMP, "no_data")))  # nothing left behind

    def test_command_line_errors_exit_nonzero_without_traceback(self):
        empty = os.path.join(_TMP, "empty_data")
        os.makedirs(empty, exist_ok=True)
        runs = {
            "unknown field": _Run(
                ["--config=configs/smoke.py", f"--workdir={_TMP}/cli1", "--config.nonexistent=1"]
            ),
            "bad value": _Run(
                ["--config=configs/smoke.py", f"--workdir={_TMP}/cli2", "--config.temperature=0"]
            ),
            "no data": _Run(
                ["--config=configs/nus_vec.py", f"--workdir={_TMP}/cli3"],
                env=_env(CGMVAE_DATA=empty),
            ),
        }
        expected = {
            "unknown field": "error: unknown config field --config.nonexistent.",
            "bad value": "--config.temperature=0.0: must be > 0",
            "no data": (
                f"error: Data set 'nus_vec' not found in data_dir {empty}. Looked for:\n"
                f"  {empty}/nus_vec.npz"
            ),
        }
        for name, run in runs.items():
            self.assertNotEqual(run.wait(), 0, name)
            self.assertIn(expected[name], run.err, name)
            self.assertNotIn("Traceback", run.err, name)
        self.assertIn("cgmvae_jax/config_lib.py", runs["unknown field"].err)
        self.assertIn("--config.data_dir", runs["no data"].err)


# --------------------------------------------------------------------------------------------
# 5. Full disk.


class _FullDiskFile:
    """A file whose write stores half of the text, then fails with ENOSPC."""

    def __init__(self, f):
        self._f = f

    def write(self, text):
        self._f.write(text[: len(text) // 2])
        self._f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _open_failing_for(name, mode):
    """A replacement for `open` in `cgmvae_jax.train`: writing `name*` in `mode` fills the disk."""
    real_open = open

    def fake_open(path, file_mode="r", *args, **kwargs):
        f = real_open(path, file_mode, *args, **kwargs)
        if file_mode.startswith(mode) and os.path.basename(path).startswith(name):
            return _FullDiskFile(f)
        return f

    return fake_open


def _copy_reference_trimmed(target):
    """The reference workdir with only its two newest latest checkpoints (as `keep` = 2)."""
    keep = {str(_EPOCHS - 2), str(_EPOCHS - 1)}

    def ignore(directory, names):
        if directory.endswith(os.path.join("checkpoints", "latest")):
            return [n for n in names if n not in keep]
        return []

    shutil.copytree(_reference(), target, ignore=ignore)
    return target


class DiskFullTest(_FaultTestCase):
    def test_checkpoint_write_failure_injected(self):
        workdir = _copy_reference_trimmed(os.path.join(_TMP, "ckpt_enospc"))
        os.remove(os.path.join(workdir, "results.json"))
        for kind in ("latest", "best"):
            shutil.rmtree(
                os.path.join(workdir, "checkpoints", kind, str(_EPOCHS - 1)), ignore_errors=True
            )

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with mock.patch.object(checkpoint.ocp.CheckpointManager, "save", full):
            with self.assertRaisesRegex(
                train.OutputWriteError,
                rf"Could not write checkpoint (best|latest)/{_EPOCHS - 1} .*the disk is full.*"
                rf"latest/{_EPOCHS - 2}, was not touched.*run the same command again",
            ):
                train.train_and_evaluate(_smoke(), workdir)
        self.assertEqual(_restore(workdir)[2]["epoch"], _EPOCHS - 2)
        train.train_and_evaluate(_smoke(), workdir)
        self.assertSameRun(workdir, _reference())

    @parameterized.named_parameters(
        ("results_json", "results.json", "w"), ("metrics_jsonl_append", "metrics.jsonl", "a")
    )
    def test_failed_output_write_is_clear_and_resumable(self, name, mode):
        workdir = _copy_reference_trimmed(os.path.join(_TMP, f"enospc_{mode}"))
        os.remove(os.path.join(workdir, "results.json"))
        resume_from = _EPOCHS - 1
        if mode == "a":  # resume before the last epoch, so that a metrics line is appended
            resume_from -= 1
            for kind in ("latest", "best"):
                shutil.rmtree(
                    os.path.join(workdir, "checkpoints", kind, str(_EPOCHS - 1)), ignore_errors=True
                )
        with mock.patch.object(workdir_lib, "open", _open_failing_for(name, mode), create=True):
            with self.assertRaises(train.OutputWriteError) as cm:
                train.train_and_evaluate(_smoke(), workdir)
        self.assertIn(
            f"Could not write {os.path.join(workdir, name)}: No space left on device. Free disk "
            "space",
            str(cm.exception),
        )
        self.assertFalse(os.path.exists(os.path.join(workdir, "results.json")))
        self.assertEqual(glob.glob(os.path.join(workdir, "*.tmp.*")), [])
        self.assertFalse(os.path.exists(os.path.join(workdir, ".lock")))
        self.assertEqual(_restore(workdir)[2]["epoch"], resume_from)  # the checkpoint is intact
        train.train_and_evaluate(_smoke(), workdir)  # the disk has room again
        self.assertSameRun(workdir, _reference())

    def test_results_on_a_full_tmpfs(self):
        with _tmpfs("4m") as mount:
            if mount is None:
                self.skipTest("cannot mount a tmpfs here; the injected variants run instead")
            workdir = _copy_reference_trimmed(os.path.join(mount, "run"))
            os.remove(os.path.join(workdir, "results.json"))
            ballast = _fill(mount, leave_pages=1)  # room for the lock file only
            config = _smoke(keep_checkpoints=_EPOCHS)  # config.json unchanged: not rewritten
            # The model record is written first (results.json marks the run finished).
            with self.assertRaisesRegex(
                train.OutputWriteError,
                f"Could not write {workdir}/model: No space left on device",
            ):
                train.train_and_evaluate(config, workdir)
            self.assertEqual(
                sorted(os.listdir(workdir)),
                ["checkpoints", "config.json", "metrics.jsonl", "model", "tensorboard"],
            )
            os.remove(ballast)
            train.train_and_evaluate(config, workdir)
            self.assertEqual(_results(workdir), _results(_reference()))


if __name__ == "__main__":
    absltest.main()
