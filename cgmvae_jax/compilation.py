"""Compiled programs: the persistent XLA compilation cache, and how long compiling took.

`enable_cache()` points JAX at a cache folder under the user's cache directory
(`$XDG_CACHE_HOME/cgmvae_jax/xla`, else `~/.cache/cgmvae_jax/xla`; `$CGMVAE_CACHE` overrides
the folder), so a second run of the same shapes loads its programs instead of compiling them.
It does nothing when the process already set a cache (`jax_compilation_cache_dir` or the
`JAX_COMPILATION_CACHE_DIR` environment variable). `--config.compilation_cache=False` turns it
off for a run.

`compile_seconds()` is the time this process has spent tracing, lowering and compiling, from
JAX's own monitoring events (a program loaded from the cache counts only its tracing).
"""

from __future__ import annotations

import os
import threading

import jax
from absl import logging

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_lock = threading.Lock()
_seconds = 0.0
_listening = False


def default_cache_dir() -> str:
    """The cache folder: `$CGMVAE_CACHE`, else under `$XDG_CACHE_HOME` or `~/.cache`."""
    if os.environ.get("CGMVAE_CACHE"):
        return os.path.expanduser(os.environ["CGMVAE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cgmvae_jax", "xla")


def enable_cache() -> str | None:
    """Turns on JAX's persistent compilation cache; returns its folder (None if unusable)."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = default_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        logging.warning("Compilation cache off: cannot create %s (%s).", path, e.strerror or e)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Cache the small programs too (validation, batch order): together they take seconds.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    return path


def _on_duration(event: str, seconds: float, **_) -> None:
    global _seconds
    if event in _COMPILE_EVENTS:
        with _lock:
            _seconds += seconds


def compile_seconds() -> float:
    """Seconds this process has spent compiling since the first call of this function."""
    global _listening
    with _lock:
        if not _listening:
            jax.monitoring.register_event_duration_secs_listener(_on_duration)
            _listening = True
        return _seconds
