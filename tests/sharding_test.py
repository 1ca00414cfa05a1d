"""Tests of data parallelism: 8 simulated CPU devices train to the same parameters as one.

The multi-device run needs `XLA_FLAGS=--xla_force_host_platform_device_count=8` before jax is
imported, so it runs in a subprocess (`_WORKER`), which trains a few steps of `configs/smoke.py`
with `num_devices=8` (batch sharded on the `data` axis, state replicated) and with
`num_devices=1` (no mesh) from the same initial state and batches, and writes both parameter
sets to an npz file that the test compares.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import jax
import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import config_lib, sharding

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKER = textwrap.dedent(
    """
    import importlib.util, json, sys
    import jax, numpy as np
    from cgmvae_jax import train

    out_path, num_seeds = sys.argv[1], int(sys.argv[2])
    spec = importlib.util.spec_from_file_location("smoke", "configs/smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    n, f, l = 200, 16, 6
    x = rng.standard_normal((n, f)).astype(np.float32)
    y = (rng.random((n, l)) < 0.3).astype(np.uint8)
    y[:5] = 0  # rows without a positive label
    arrays, info = {}, {"device_count": jax.device_count()}
    for num_devices in (8, 1):
        config = module.get_config()
        config.num_devices = num_devices
        config.num_seeds = num_seeds
        trainer = train.Trainer(config, f, l, n)
        state = trainer.init_state()
        data_x = jax.device_put(x, trainer.replicated)
        data_y = jax.device_put(y, trainer.replicated)
        losses, program = [], None
        for epoch in range(2):  # 7 steps per epoch, the last batch padded
            indices, weights = trainer.epoch_batches(epoch)
            if program is None:  # the `run_steps` program, compiled once for both epochs
                program = trainer.lower_steps(state, data_x, data_y, indices, weights).compile()
                info[f"all_reduce_{num_devices}"] = "all-reduce" in program.as_text()
            state, metrics = program(
                state, trainer.keys["step"], data_x, data_y, indices, weights
            )
            losses.append(np.asarray(metrics["loss"]))
        leaves = jax.tree_util.tree_leaves_with_path(state.params)
        for path, leaf in leaves:
            arrays[f"{num_devices}:{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
            if num_devices > 1:
                info.setdefault("param_sharding", str(leaf.sharding.spec))
        arrays[f"{num_devices}:loss"] = np.concatenate(losses, axis=-1)
        info[f"steps_{num_devices}"] = int(np.asarray(state.step).max())
    np.savez(out_path, **arrays)
    print(json.dumps(info))
    """
)


def _run_worker(num_seeds: int) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "params.npz")
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
        env["PYTHONPATH"] = _REPO + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(
            [sys.executable, "-c", _WORKER, out, str(num_seeds)],
            cwd=_REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"worker failed:\n{proc.stderr[-4000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(out) as data:
            arrays = {k: data[k] for k in data.files}
    return info, arrays


class DataParallelTest(parameterized.TestCase):
    def test_eight_devices_match_one_device(self):
        # Two vmapped seeds: the seed axis and the data axis together (one seed is the same
        # program with a seed axis of 1).
        num_seeds = 2
        info, arrays = _run_worker(num_seeds)
        self.assertEqual(info["device_count"], 8)
        self.assertTrue(info["all_reduce_8"], "the sharded step has no gradient all-reduce")
        self.assertFalse(info["all_reduce_1"])
        self.assertEqual(info["param_sharding"], str(jax.P()))  # replicated state
        self.assertEqual(info["steps_8"], 14)
        self.assertEqual(info["steps_1"], 14)
        names = sorted(k[2:] for k in arrays if k.startswith("8:"))
        self.assertGreater(len(names), 10)
        for name in names:
            sharded, single = arrays[f"8:{name}"], arrays[f"1:{name}"]
            self.assertEqual(sharded.shape, single.shape, name)
            self.assertTrue(np.isfinite(sharded).all(), name)
            np.testing.assert_allclose(sharded, single, rtol=1e-4, atol=1e-5, err_msg=name)
        self.assertEqual(arrays["8:loss"].shape, (num_seeds, 14))


class MeshTest(parameterized.TestCase):
    def test_one_device_builds_no_mesh(self):
        config = config_lib.base_config()
        config.num_devices = 1
        mesh = sharding.make_mesh(config)
        self.assertIsNone(mesh)
        self.assertIsNone(sharding.batch_sharding(mesh))
        self.assertIsNone(sharding.replicated(mesh))

    def test_too_many_devices_is_a_clear_error(self):
        config = config_lib.base_config()
        config.num_devices = jax.device_count() + 1
        with self.assertRaisesRegex(ValueError, "num_devices"):
            sharding.make_mesh(config)


if __name__ == "__main__":
    absltest.main()
