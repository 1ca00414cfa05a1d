"""Helpers shared by the test modules: config files, the shared data sets, metric keys.

Import as `from tests import helpers` (pytest runs from the repository root, which is on the
path as the rootdir of `tests/`).
"""

import functools
import importlib.util
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The metric keys of the contract (DESIGN.md §5), written out independently of metrics.py.
METRIC_KEYS = frozenset(
    "hamming_accuracy example_f1 micro_f1 macro_f1 subset_accuracy "
    "precision_at_1 precision_at_3 precision_at_5".split()
)


def load_config(name: str, **overrides):
    """`configs/<name>.py`'s `get_config()` with fields overridden, e.g. `num_epochs=2`."""
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in overrides.items():
        config[key] = value
    return config


def smoke_config(**overrides):
    """The tiny synthetic `configs/smoke.py` (seconds per run on a CPU)."""
    return load_config("smoke", **overrides)


def shared_data_dir() -> str | None:
    """The shared data sets: `$CGMVAE_DATA` when set, else `<repo>/../shared/datasets`.

    Returns None when neither holds yeast.npz; tests that need real data skip with
    `NO_SHARED_DATA` as the reason.
    """
    for candidate in (
        os.environ.get("CGMVAE_DATA"),
        os.path.join(REPO, "..", "shared", "datasets"),
    ):
        if candidate and os.path.isfile(os.path.join(candidate, "yeast.npz")):
            return os.path.abspath(candidate)
    return None


NO_SHARED_DATA = "shared data sets not found ($CGMVAE_DATA or <repo>/../shared/datasets)"


@functools.cache
def shared_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(X float32, Y uint8) of a shared data set, read once per test process."""
    with np.load(os.path.join(shared_data_dir(), f"{name}.npz")) as f:
        return np.asarray(f["X"], np.float32), np.asarray(f["Y"], np.uint8)
