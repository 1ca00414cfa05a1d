r"""Training-step throughput of cgmvae_jax next to the PyTorch reference, on this machine.

One setting (a config's shapes), printing one JSON object as the last line of stdout:

    python benchmarks/step_throughput.py --config=configs/nus_vec.py --json

The whole sweep (no --config): every dataset config, an L sweep (10 ... 10,000 labels, B = 256),
a B sweep, bfloat16 compute, S = 3 vmapped seeds against sequential single-seed runs, and 1/2/4/8
simulated CPU devices. Every setting runs in its own subprocess (its own peak RSS, no shared
thread pools or caches); the rows go to `benchmarks/results/step_throughput.jsonl` (one JSON line
per setting, replacing rows of the same setting) and `benchmarks/results/step_throughput.md`:

    python benchmarks/step_throughput.py                      # everything (~1 hour on 2 cores)
    python benchmarks/step_throughput.py --groups=configs,seeds

What one setting measures:

* Shapes: synthetic standard-normal features and multi-hot labels (3 positives per row; the
  step's cost does not depend on the label density) of the config's batch size B, embedding
  size E and latent size d, and the data set's F, L and number of training rows n (the table
  `DATASET_SHAPES`, from the shared data sets' README and the paper).
* The step is the training program itself: `train.Trainer(config, F, L, n)`, compiled ahead of
  time from `Trainer.lower_steps` (the jitted, seed-vmapped `train_steps` with state donation),
  with the data on the device and each batch gathered inside the program. Two programs: one
  step per call, and a `lax.scan` over a whole epoch (capped at `--scan_steps` steps per call
  so that large data sets finish in time; per-step throughput does not depend on the cap once
  the per-call dispatch is amortised). Compile time is measured apart, per program.
* PyTorch: `benchmarks/torch_reference.py` (same model, objective and Adam), eager, with
  `torch.set_num_threads(cores)`; `--torch=eager,compile` adds `torch.compile`.
* Timing: `hardware.interleaved_timing`, the programs in turns (A B C A B C ...), each for at
  least `--min_seconds` per round; medians over `--repeats` rounds (>= 5). Ratios are medians of
  per-round ratios, so that a machine slowing down mid-run hits both sides alike.
* FLOPs: `flops_per_step` is XLA's cost analysis of the compiled one-step program (all dots and
  element-wise work of forward, backward and the optimizer update, all seeds), and
  `matmul_flops_per_step` the analytic matmul count of the PyTorch reference.
* Peak: an fp32 (bf16 for `dtype=bfloat16`) 1024 x 1024 matmul chain
  (`hardware.measure_matmul_peak_flops`) timed after every round with jax (XLA's own matmul,
  the denominator) and with torch (MKL / oneDNN, reported apart as `torch_matmul_peak_flops`
  and `mfu_vs_torch_peak`); `matmul_peak_flops` is the median over rounds, and `mfu` the median
  over rounds of flops_per_step x steps/s / that round's peak.
* Memory: `xla_temp_bytes` etc. from the compiled program's `memory_analysis()` (the buffers
  XLA plans for one call, excluding the arguments), and `maxrss_mb`, the process's peak resident
  memory (`resource.getrusage`), which includes the PyTorch reference and the Python runtime.

The JSON object has at least `jax_steps_per_sec` (the whole-epoch scan program, what training
runs with the default `steps_per_call=0`), `torch_steps_per_sec`, `ratio`, `flops_per_step`,
`matmul_peak_flops`, `mfu` and `device`; `scan_vs_call1` is the median per-round ratio of the
scan program's steps/s to the one-step program's; `guard_cost` the fraction of the scan's
throughput that the finiteness check costs (against the same scan built with
`Trainer(guard=False)`, timed in the same rounds); `ratio_bound` the jax / PyTorch ratio the
step would reach at 100 % MFU (peak / FLOPs per step / PyTorch steps/s); `peak_dtype` the
dtype of the peak (bfloat16 on a GPU or TPU).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import hardware  # the installed package (setup.py), also from a script run

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file: measure its shapes (one setting). Omit for the sweep."
)
_JSON = flags.DEFINE_bool("json", False, "Print the setting's result as one JSON line (last).")
_LABELS = flags.DEFINE_integer("labels", 0, "Override L (0: the data set's).")
_FEATURES = flags.DEFINE_integer("features", 0, "Override F (0: the data set's).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Override n, training rows (0: data set's).")
_TORCH = flags.DEFINE_list("torch", ["eager"], "PyTorch modes: eager, compile, or none.")
_PEAK_DTYPE = flags.DEFINE_enum(
    "peak_dtype",
    "auto",
    ["auto", "float32", "bfloat16"],
    "Dtype of the matmul peak (MFU denominator); auto: compute dtype on CPU, bfloat16 on GPU/TPU.",
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved rounds (medians are reported).")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 0.5, "Timed seconds per program per round.")
_SCAN_STEPS = flags.DEFINE_integer(
    "scan_steps", 32, "Cap on steps per call of the epoch-scan program (0: the whole epoch)."
)
_SEEDS_COMPARE = flags.DEFINE_integer(
    "seeds_compare",
    0,
    "If > 1: time num_seeds=S (vmapped) against num_seeds=1 (S sequential runs) instead.",
)
_NAME = flags.DEFINE_string("name", "", "Setting name for the result row.")
_GROUP = flags.DEFINE_string("group", "", "Sweep group of the result row.")
_GROUPS = flags.DEFINE_list(
    "groups",
    ["configs", "labels", "batch", "dtype", "seeds", "devices"],
    "Sweep groups to run (sweep mode).",
)
_OUT_DIR = flags.DEFINE_string(
    "out_dir", os.path.join(_REPO, "benchmarks", "results"), "Sweep output directory."
)
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds per setting subprocess (sweep mode).")
_QUIET_LOAD = flags.DEFINE_float(
    "quiet_load",
    0.0,
    "Sweep mode: before each setting, wait until the 1-minute load average is below this "
    "(0: do not wait), for at most --quiet_wait seconds. The machine is shared; the load of "
    "each row is recorded either way.",
)
_QUIET_WAIT = flags.DEFINE_integer("quiet_wait", 1800, "Longest wait for --quiet_load (s).")

# (training rows, F, L) of each data set as the Trainer sees it. Training rows: the predefined
# train part minus the 10 % carved out for validation, or 80 % of a random split. Sources: the
# shared data sets' README (`/work/shared/datasets/README.md`) and, for the data sets not
# shipped, the C-GMVAE / MPVAE papers (nus_vec 269,648 x 128 -> 81; mirflickr: the official
# split's 9,821 training rows, 1000 -> 38; ebird 41,778 x 15 -> 100; bookmarks 87,856 x 2150 ->
# 208).


def _carved(train_part: int) -> int:
    return train_part - round(0.1 * train_part)


def _random(n: int) -> int:
    return n - 2 * round(0.1 * n)


DATASET_SHAPES = {
    "yeast": (_carved(1500), 103, 14),
    "scene": (_carved(1211), 294, 6),
    "emotions": (_carved(391), 72, 6),
    "sider": (_random(1427), 40, 27),
    "reuters": (_carved(7770), 7204, 90),
    "delicious": (_carved(12920), 500, 983),
    "bibtex": (_carved(4880), 1836, 159),
    "enron": (_carved(1123), 1001, 53),
    "medical": (_carved(333), 1449, 45),
    "nus_vec": (_random(269648), 128, 81),
    "mirflickr": (9821, 1000, 38),
    "ebird": (_random(41778), 15, 100),
    "bookmarks": (_random(87856), 2150, 208),
}

DATASET_CONFIGS = (
    "emotions",
    "scene",
    "yeast",
    "sider",
    "medical",
    "enron",
    "bibtex",
    "reuters",
    "delicious",
    "nus_vec",
    "mirflickr",
    "ebird",
    "bookmarks",
)
LABEL_SWEEP = (10, 100, 1000, 3000, 10000)
BATCH_SWEEP = (32, 64, 128, 512, 1024)  # 256 is the nus_vec row
DEVICE_SWEEP = (1, 2, 4, 8)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dataset_shapes(config) -> tuple[int, int, int]:
    """(n training rows, F, L) for `config.dataset`, with the --num_train/--features/--labels
    overrides applied."""
    name = str(config.dataset)
    if name == "synthetic":
        n = _random(int(config.synthetic_examples))
        shapes = (n, int(config.synthetic_features), int(config.synthetic_labels))
    elif name in DATASET_SHAPES:
        shapes = DATASET_SHAPES[name]
    else:
        raise ValueError(
            f"No shapes known for dataset {name!r}; add it to DATASET_SHAPES or pass "
            "--num_train, --features and --labels."
        )
    n, f, num_labels = shapes
    return (_NUM_TRAIN.value or n, _FEATURES.value or f, _LABELS.value or num_labels)


def synthetic_data(num_rows: int, num_features: int, num_labels: int, seed: int = 0):
    """Standard-normal features [n, F] float32 and 0/1 labels [n, L] uint8, 3 positives a row."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_rows, num_features), dtype=np.float32)
    k = min(3, num_labels)
    cols = np.argsort(rng.random((num_rows, num_labels)), axis=1)[:, :k]
    y = np.zeros((num_rows, num_labels), np.uint8)
    np.put_along_axis(y, cols, 1, axis=1)
    return x, y


def _memory_fields(compiled, prefix: str) -> dict:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return {}
    if stats is None:
        return {}
    return {
        f"{prefix}temp_bytes": int(stats.temp_size_in_bytes),
        f"{prefix}argument_bytes": int(stats.argument_size_in_bytes),
        f"{prefix}output_bytes": int(stats.output_size_in_bytes),
        f"{prefix}alias_bytes": int(stats.alias_size_in_bytes),
    }


def _flops(compiled) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per partition
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


class JaxProgram:
    """A compiled `Trainer` step program with its own state, callable with no arguments.

    Args:
      trainer: The `train.Trainer`.
      data_x: Device features [n, F]; data_y: device labels [n, L].
      steps: Steps per call (1, or the scan length).
      seed: Seeds the row indices of the batches.
    """

    def __init__(self, trainer, data_x, data_y, steps: int, seed: int = 0):
        import jax
        import jax.numpy as jnp

        self.trainer = trainer
        self.steps = steps
        seeds, batch = int(trainer.config.num_seeds), trainer.batch_size
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, data_x.shape[0], size=(seeds, steps, batch), dtype=np.int32)
        self.args = (
            data_x,
            data_y,
            jax.device_put(idx, trainer.replicated),
            jax.device_put(jnp.ones((seeds, steps, batch), jnp.float32), trainer.replicated),
        )
        self.state = trainer.init_state()
        start = time.perf_counter()
        self.compiled = trainer.lower_steps(self.state, *self.args).compile()
        self.compile_seconds = time.perf_counter() - start
        self.flops_per_call = _flops(self.compiled)
        self.memory = _memory_fields(self.compiled, "xla_")
        self.last_loss = None

    def __call__(self) -> None:
        self.state, metrics = self.compiled(self.state, self.trainer.keys["step"], *self.args)
        self.last_loss = metrics["loss"]
        self.last_loss.block_until_ready()


def _torch_programs(config, num_features: int, num_labels: int, modes) -> tuple[dict, dict]:
    """name -> zero-argument step function, and info fields, for the PyTorch reference."""
    from benchmarks import torch_reference as tr

    fns, info = {}, {}
    shapes = _torch_model_kwargs(config, num_features, num_labels)
    kwargs = dict(shapes, lr=float(config.learning_rate), weight_decay=float(config.weight_decay))
    x, y = tr.synthetic_batch(int(config.batch_size), num_features, num_labels)
    import torch

    info["torch_threads"] = torch.get_num_threads()
    if "eager" in modes:
        model, opt = tr.build(num_features, num_labels, **kwargs)
        fns["torch"] = lambda: tr.train_step(model, opt, x, y)
        info["torch_threads"] = torch.get_num_threads()
    if "compile" in modes:
        model_c, opt_c = tr.build(num_features, num_labels, **kwargs)
        step = tr.compiled_train_step(model_c, opt_c, x, y)
        info["torch_compile_seconds"] = step.compile_seconds
        info["torch_compiled"] = step.compiled
        if step.compiled:
            fns["torch_compile"] = lambda: step.step(x, y)
        else:
            info["torch_compile_error"] = step.reason
    info["torch_matmul_flops_per_step"] = tr.matmul_flops_per_step(
        int(config.batch_size),
        num_features,
        num_labels,
        **{k: v for k, v in shapes.items() if k not in ("dropout_rate", "log_var_limit")},
    )["total"]
    return fns, info


def _torch_model_kwargs(config, num_features: int, num_labels: int) -> dict:
    """The PyTorch reference's model settings: the fields of the flax model that
    `models.make_model` builds from `config` (the library reads the config fields once)."""
    from benchmarks import torch_reference as tr
    from cgmvae_jax import models

    model = models.make_model(config, num_features, num_labels)
    kwargs = {name: getattr(model, name) for name in tr.MODEL_FIELDS}
    kwargs["log_var_limit"] = kwargs["log_var_limit"] or None  # flax: 0 disables the clamp
    return kwargs


def _peak_dtype(config) -> str:
    """The dtype of the matmul peak (the MFU denominator): the compute dtype on a CPU, bfloat16
    on a GPU or TPU (their matrix units' rate, the usual reference there), or --peak_dtype."""
    import jax

    if _PEAK_DTYPE.value != "auto":
        return _PEAK_DTYPE.value
    return str(config.dtype) if jax.default_backend() == "cpu" else "bfloat16"


def _peaks(dtype: str, with_torch: bool) -> dict:
    import jax

    size = 1024 if jax.default_backend() == "cpu" else 8192  # big enough to fill a GPU
    out = {"jax": hardware.measure_matmul_peak_flops(dtype, size=size, repeats=3)}
    if with_torch:
        out["torch"] = hardware.measure_matmul_peak_flops(dtype, repeats=3, backend="torch")
    return out


def _rounds(fns: dict, steps: dict, dtype: str, with_torch: bool) -> tuple[dict, list]:
    """Interleaved rounds; after each round, the matmul peaks. Returns rates and peaks."""
    for fn in fns.values():  # warm-up (first calls allocate, fill caches)
        fn()
    rates = {name: [] for name in fns}
    peaks = []
    for r in range(_REPEATS.value):
        one = hardware.interleaved_timing(
            fns,
            repeats=1,
            min_seconds=_MIN_SECONDS.value,
            steps_per_call=steps,
            warmup_calls=0,
        )
        for name, values in one.items():
            rates[name].extend(values)
        peaks.append(_peaks(dtype, with_torch))
        _log(
            f"  round {r + 1}/{_REPEATS.value}: "
            + "  ".join(f"{k} {v[-1]:.2f}" for k, v in rates.items())
            + "  peak "
            + " ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks[-1].items())
            + " GFLOP/s"
        )
    return rates, peaks


def _median(values) -> float:
    return float(statistics.median(values))


# Long: one benchmark setting from start to finish, every measured field in one place.
def measure(config) -> dict:
    """Measures one setting; see the module docstring. Returns the result row."""
    import jax
    import jax.numpy as jnp

    from cgmvae_jax import train

    num_train, num_features, num_labels = dataset_shapes(config)
    batch = int(config.batch_size)
    row = {
        "name": _NAME.value or str(config.dataset),
        "group": _GROUP.value or "single",
        "dataset": str(config.dataset),
        "batch_size": batch,
        "num_features": num_features,
        "num_labels": num_labels,
        "embedding_dim": int(config.embedding_dim),
        "latent_dim": int(config.latent_dim),
        "num_train": num_train,
        "num_seeds": int(config.num_seeds),
        "dtype": str(config.dtype),
        "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
        "num_devices": len(jax.devices())
        if int(config.num_devices) == 0
        else int(config.num_devices),
        "visible_devices": len(jax.devices()),
        "load_average_start": hardware.machine_info()["load_average_1min"],
    }
    steps_per_epoch = -(-num_train // batch)
    scan = steps_per_epoch if _SCAN_STEPS.value <= 0 else min(steps_per_epoch, _SCAN_STEPS.value)
    row.update(steps_per_epoch=steps_per_epoch, scan_steps=scan)

    # Data on the device: enough rows for distinct batches; the schedule uses the real n.
    rows = min(num_train, max(batch * scan, batch))
    x, y = synthetic_data(rows, num_features, num_labels)
    _log(f"[{row['name']}] B={batch} F={num_features} L={num_labels} n={num_train} scan={scan}")

    seeds_mode = _SEEDS_COMPARE.value > 1
    if seeds_mode:
        config.num_seeds = 1
    trainer = train.Trainer(config, num_features, num_labels, num_train)
    data_x = jax.device_put(x, trainer.replicated)
    data_y = jax.device_put(y, trainer.replicated)
    one = JaxProgram(trainer, data_x, data_y, steps=1)
    _log(f"  compiled 1-step program in {one.compile_seconds:.1f} s")
    fns, steps = {}, {}
    if seeds_mode:
        s = _SEEDS_COMPARE.value
        many_config = config.copy_and_resolve_references()
        many_config.num_seeds = s
        trainer_s = train.Trainer(many_config, num_features, num_labels, num_train)
        prog_1 = JaxProgram(trainer, data_x, data_y, steps=scan)
        prog_s = JaxProgram(trainer_s, data_x, data_y, steps=scan)
        row.update(
            num_seeds=s,
            compile_seconds=prog_1.compile_seconds,
            compile_seconds_vmapped=prog_s.compile_seconds,
        )
        fns = {"jax_1seed": prog_1, f"jax_{s}seeds": prog_s}
        steps = {"jax_1seed": scan, f"jax_{s}seeds": scan}
        rates, peaks = _rounds(fns, steps, _peak_dtype(config), with_torch=False)
        per_round = [
            s * a / b for a, b in zip(rates[f"jax_{s}seeds"], rates["jax_1seed"], strict=True)
        ]
        row.update(
            single_seed_steps_per_sec=_median(rates["jax_1seed"]),
            vmapped_steps_per_sec=_median(rates[f"jax_{s}seeds"]),
            vmapped_seed_steps_per_sec=s * _median(rates[f"jax_{s}seeds"]),
            sequential_seed_steps_per_sec=_median(rates["jax_1seed"]),
            seeds_speedup=_median(per_round),
            rates=rates,
        )
        loss = float(jnp.mean(prog_s.last_loss))
    else:
        scan_prog = one if scan == 1 else JaxProgram(trainer, data_x, data_y, steps=scan)
        _log(f"  compiled {scan}-step program in {scan_prog.compile_seconds:.1f} s")
        # The same scan without the finiteness check, to measure what the check costs.
        unguarded = train.Trainer(config, num_features, num_labels, num_train, guard=False)
        noguard_prog = JaxProgram(unguarded, data_x, data_y, steps=scan)
        fns = {"jax": scan_prog, "jax_call1": one, "jax_noguard": noguard_prog}
        steps = {"jax": scan, "jax_call1": 1, "jax_noguard": scan}
        modes = [m for m in _TORCH.value if m != "none"]
        info = {}
        if modes:
            torch_fns, info = _torch_programs(config, num_features, num_labels, modes)
            fns.update(torch_fns)
            steps.update(dict.fromkeys(torch_fns, 1))
        row.update(info)
        rates, peaks = _rounds(fns, steps, _peak_dtype(config), with_torch=bool(modes))
        row.update(
            compile_seconds=one.compile_seconds,
            compile_seconds_scan=scan_prog.compile_seconds,
            jax_steps_per_sec=_median(rates["jax"]),
            jax_steps_per_sec_call1=_median(rates["jax_call1"]),
            # Median of per-round ratios: medians of the two programs taken over different rounds
            # can disagree on a machine whose speed jumps between rounds (other processes).
            scan_vs_call1=hardware.median_ratio(rates, "jax", "jax_call1"),
            # Fraction of the unchecked step's throughput the finiteness check costs.
            guard_cost=1.0 - hardware.median_ratio(rates, "jax", "jax_noguard"),
            jax_samples_per_sec=_median(rates["jax"]) * batch * int(config.num_seeds),
        )
        if "torch" in rates:
            row.update(
                torch_steps_per_sec=_median(rates["torch"]),
                torch_samples_per_sec=_median(rates["torch"]) * batch,
                ratio=hardware.median_ratio(rates, "jax", "torch"),
                ratio_call1=hardware.median_ratio(rates, "jax_call1", "torch"),
            )
        if "torch_compile" in rates:
            row.update(
                torch_compile_steps_per_sec=_median(rates["torch_compile"]),
                ratio_vs_torch_compile=hardware.median_ratio(rates, "jax", "torch_compile"),
            )
        row["rates"] = rates
        loss = float(jnp.mean(scan_prog.last_loss))

    # One step, all seeds. A sharded program's cost analysis is per device: times devices.
    flops = one.flops_per_call * max(1, row["num_devices"])
    peak_per_round = [p["jax"] for p in peaks]
    main = "jax" if "jax" in rates else f"jax_{_SEEDS_COMPARE.value}seeds"
    main_flops = flops * (_SEEDS_COMPARE.value if seeds_mode else 1)  # per call-step of `main`
    row.update(
        flops_per_step=flops,
        matmul_peak_flops=_median(peak_per_round),
        jax_matmul_peak_flops=_median([p["jax"] for p in peaks]),
        achieved_flops=_median(rates[main]) * main_flops,
        mfu=_median([r * main_flops / p for r, p in zip(rates[main], peak_per_round, strict=True)]),
        peak_dtype=_peak_dtype(config),
        final_loss=loss,
        **one.memory,
    )
    if "jax_call1" in rates:
        row["mfu_call1"] = _median(
            [r * flops / p for r, p in zip(rates["jax_call1"], peak_per_round, strict=True)]
        )
    if "torch_steps_per_sec" in row:
        row["ratio_bound"] = _ratio_bound(row)  # the ratio at 100 % MFU
    if peaks and "torch" in peaks[0]:
        row["torch_matmul_peak_flops"] = _median([p["torch"] for p in peaks])
        row["mfu_vs_torch_peak"] = _median(
            [r * main_flops / p["torch"] for r, p in zip(rates[main], peaks, strict=True)]
        )
    row["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info = hardware.machine_info()
    row["load_average_end"] = info.pop("load_average_1min")
    row.update(info)
    return row


# --------------------------------------------------------------------------------------------
# Sweep mode.


def sweep_settings(groups) -> list[dict]:
    """The sweep's settings: name, group, command-line arguments, extra environment."""
    out = []
    cfg = lambda name: f"--config={os.path.join(_REPO, 'configs', name + '.py')}"  # noqa: E731
    if "configs" in groups:
        for name in DATASET_CONFIGS:
            out.append({"name": name, "group": "configs", "args": [cfg(name)]})
    if "labels" in groups:
        for num_labels in LABEL_SWEEP:
            out.append(
                {
                    "name": f"nus_vec L={num_labels}",
                    "group": "labels",
                    "args": [cfg("nus_vec"), f"--labels={num_labels}"],
                }
            )
    if "batch" in groups:
        for b in BATCH_SWEEP:
            out.append(
                {
                    "name": f"nus_vec B={b}",
                    "group": "batch",
                    "args": [cfg("nus_vec"), f"--config.batch_size={b}"],
                }
            )
    if "dtype" in groups:
        for name in ("nus_vec", "yeast", "delicious"):
            out.append(
                {
                    "name": f"{name} bfloat16",
                    "group": "dtype",
                    "args": [cfg(name), "--config.dtype=bfloat16"],
                }
            )
    if "seeds" in groups:
        out.append(
            {
                "name": "yeast 3 seeds",
                "group": "seeds",
                "args": [cfg("yeast"), "--seeds_compare=3"],
            }
        )
    if "devices" in groups:
        for n in DEVICE_SWEEP:
            out.append(
                {
                    "name": f"nus_vec {n} simulated device(s)",
                    "group": "devices",
                    "args": [cfg("nus_vec"), f"--config.num_devices={n}", "--torch=none"],
                    "env": {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
                }
            )
    return out


def run_setting(setting: dict) -> dict:
    """Runs one setting in a subprocess and returns its JSON row (or an error row)."""
    hardware.wait_for_quiet(_QUIET_LOAD.value, _QUIET_WAIT.value, log=_log)
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--json",
        f"--name={setting['name']}",
        f"--group={setting['group']}",
        f"--repeats={_REPEATS.value}",
        f"--min_seconds={_MIN_SECONDS.value}",
        f"--scan_steps={_SCAN_STEPS.value}",
        *setting["args"],
    ]
    if not any(a.startswith("--torch=") for a in setting["args"]):
        cmd.append(f"--torch={','.join(_TORCH.value)}")
    env = dict(os.environ, **setting.get("env", {}))
    _log(f"== {setting['name']}: {' '.join(cmd[2:])}")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=_TIMEOUT.value, check=False
        )
    except subprocess.TimeoutExpired:
        return {"name": setting["name"], "group": setting["group"], "error": "timeout"}
    sys.stderr.write(proc.stderr[-3000:])
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {
            "name": setting["name"],
            "group": setting["group"],
            "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:500],
        }
    row = json.loads(lines[-1])
    row["wall_seconds"] = time.perf_counter() - start
    row["command"] = "python benchmarks/step_throughput.py " + " ".join(
        a.replace(_REPO + os.sep, "") for a in setting["args"]
    )
    return row


def _fmt(value, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return format(value, spec)


def _mb(value) -> str:
    return "–" if value is None else f"{value / 2**20:.0f}"


def _torch_mfu(row: dict) -> float | None:
    try:
        return (
            row["torch_matmul_flops_per_step"]
            * row["torch_steps_per_sec"]
            / row["matmul_peak_flops"]
        )
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _ratio_bound(row: dict) -> float | None:
    try:
        return row["matmul_peak_flops"] / row["flops_per_step"] / row["torch_steps_per_sec"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _machine(row: dict) -> str:
    return (
        f"{row.get('cpu_model', '?')}, {row.get('available_cores', '?')} cores usable, "
        f"{row.get('ram_gb', '?')} GiB RAM, {row.get('platform', '?')}"
    )


def _dates(rows: list[dict], machine: str) -> str:
    dates = sorted(r.get("date_utc", "") for r in rows if _machine(r) == machine)
    return f"{dates[0][:16]} … {dates[-1][:16]} UTC" if dates else "–"


def _machines_line(rows: list[dict]) -> str:
    ok = [r for r in rows if "error" not in r]
    machines = sorted({_machine(r) for r in ok})
    return "Measured on " + "; ".join(f"{m} ({_dates(ok, m)})" for m in machines) + "."


_GROUP_TITLES = {
    "configs": "Dataset configs (their B, E; the data set's n, F, L)",
    "labels": "L sweep (nus_vec shapes: B = 256, F = 128, E = 1024, d = 64)",
    "batch": "B sweep (nus_vec shapes)",
    "dtype": "bfloat16 compute (float32 parameters; torch stays float32; MFU vs the bf16 "
    "matmul peak)",
}
_STEP_HEADER = (
    "| setting | B | F | L | E | scan | jax steps/s | 1/call | torch steps/s | ratio | "
    "ratio 1/call | MFU | torch MFU | ratio bound | guard cost | GFLOP/step | "
    "compile s (1 / scan) | "
    "XLA temp MiB | RSS MiB | load |"
)
_SEEDS_HEADER = (
    "| setting | S | single-seed steps/s | vmapped steps/s (S seeds each) | seed-steps/s "
    "vmapped | seed-steps/s sequential | speedup | load |"
)
_DEVICES_HEADER = "| setting | devices | jax steps/s | 1/call | compile s (1 / scan) | load |"
_DEVICES_TEXT = (
    "`XLA_FLAGS=--xla_force_host_platform_device_count=8`, `--config.num_devices=N`: the "
    "batch is sharded over N CPU 'devices' that share the same cores, so this shows the "
    "overhead of the sharded program, not a speed-up (real devices would each bring "
    "their own compute)."
)


def markdown(rows: list[dict]) -> str:
    """The results table (Markdown) of all rows, by group."""
    lines = _preamble(rows)
    for group, title in _GROUP_TITLES.items():
        lines += _section(title, _of_group(rows, group), _STEP_HEADER, _step_cells)
    lines += _section(
        "Many seeds: S vmapped seeds in one program vs S sequential single-seed runs",
        _of_group(rows, "seeds"),
        _SEEDS_HEADER,
        _seeds_cells,
    )
    lines += _section(
        "Data parallelism over simulated devices",
        _of_group(rows, "devices"),
        _DEVICES_HEADER,
        _devices_cells,
        intro=[_DEVICES_TEXT, ""],
    )
    return "\n".join(lines)


def _of_group(rows: list[dict], group: str) -> list[dict]:
    return [r for r in rows if r.get("group") == group]


def _section(title: str, rows: list[dict], header: str, cells, intro=()) -> list[str]:
    """`## title`, the machines, `intro` lines and a table of `cells(row)` per row (an error
    row spans the table); [] without rows."""
    if not rows:
        return []
    num_columns = header.count("|") - 1
    lines = [f"## {title}", "", _machines_line(rows), "", *intro, header]
    lines.append("|" + "---|" * num_columns)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error']} |" + " |" * (num_columns - 2))
        else:
            lines.append("| " + " | ".join(cells(r)) + " |")
    return lines + [""]


def _step_cells(r: dict) -> list[str]:
    return [
        r["name"],
        *(str(r[k]) for k in ("batch_size", "num_features", "num_labels", "embedding_dim")),
        str(r["scan_steps"]),
        *_rates(r, "jax_steps_per_sec", "jax_steps_per_sec_call1", "torch_steps_per_sec"),
        f"{_fmt(r.get('ratio'))}×",
        f"{_fmt(r.get('ratio_call1'))}×",
        _fmt(r.get("mfu"), ".0%"),
        _fmt(_torch_mfu(r), ".0%"),
        f"{_fmt(_ratio_bound(r))}×",
        _fmt(r.get("guard_cost"), ".1%"),
        _fmt(r.get("flops_per_step", 0) / 1e9),
        _compile_cell(r),
        _mb(r.get("xla_temp_bytes")),
        _fmt(r.get("maxrss_mb"), ".0f"),
        _fmt(r.get("load_average_end"), ".1f"),
    ]


def _seeds_cells(r: dict) -> list[str]:
    rates = ("single_seed", "vmapped", "vmapped_seed", "sequential_seed")
    return [
        r["name"],
        str(r["num_seeds"]),
        *_rates(r, *(f"{k}_steps_per_sec" for k in rates)),
        f"{_fmt(r['seeds_speedup'])}×",
        _fmt(r.get("load_average_end"), ".1f"),
    ]


def _devices_cells(r: dict) -> list[str]:
    return [
        r["name"],
        str(r["num_devices"]),
        *_rates(r, "jax_steps_per_sec", "jax_steps_per_sec_call1"),
        _compile_cell(r),
        _fmt(r.get("load_average_end"), ".1f"),
    ]


def _rates(r: dict, *keys: str) -> list[str]:
    return [_fmt(r.get(k)) for k in keys]


def _compile_cell(r: dict) -> str:
    """Compile seconds of the one-step / scan programs."""
    return f"{_fmt(r.get('compile_seconds'), '.1f')} / {_fmt(r.get('compile_seconds_scan'), '.1f')}"


def _preamble(rows: list[dict]) -> list[str]:
    """Title, dates, machines, versions, load and the column legend."""
    ok = [r for r in rows if "error" not in r]
    first = ok[0] if ok else {}
    dates = sorted(r.get("date_utc", "") for r in ok)
    loads = [v for r in ok for v in (r.get("load_average_start"), r.get("load_average_end")) if v]
    return [
        "# Training-step throughput: cgmvae_jax vs the PyTorch reference",
        "",
        "Made with `python benchmarks/step_throughput.py` (the whole sweep; `--groups=...` for "
        "part of it); one JSON line per setting in `step_throughput.jsonl`. What is measured and "
        "how: the module docstring of `benchmarks/step_throughput.py`.",
        "",
        f"- Date (UTC): {dates[0][:16] if dates else '–'} … {dates[-1][:16] if dates else '–'}",
        "- Machine(s): "
        + "; ".join(f"{m} ({_dates(ok, m)})" for m in sorted({_machine(r) for r in ok}))
        + ". Ratios and MFU compare programs of the same run, so every row is self-consistent; "
        "rows of different machines are not comparable in absolute steps/s.",
        f"- Versions: python {first.get('python')}, jax {first.get('jax_version')}, jaxlib "
        f"{first.get('jaxlib_version')}, flax {first.get('flax_version')}, optax "
        f"{first.get('optax_version')}, numpy {first.get('numpy_version')}, torch "
        f"{first.get('torch_version')} (eager, {first.get('torch_threads', '?')} threads)",
        f"- Load average (1 min) during the runs: {min(loads, default=0):.1f} – "
        f"{max(loads, default=0):.1f} (the machine is shared; each row has its own in the "
        "JSON lines). Timings are interleaved (A B A B …), medians of "
        f"{first.get('repeats', _REPEATS.value)} rounds.",
        "",
        "Columns: *jax* = steps/s of the training program (epoch scan of `scan` steps per call; "
        "*1/call* = one step per call); *torch* = PyTorch eager reference; *ratio* = jax / torch "
        "(median of per-round ratios); *MFU* = XLA FLOPs per step × jax steps/s ÷ the same run's "
        "fp32 matmul peak (1024² chain with jax; torch's MKL matmul peak is in the JSON lines); "
        "*compile* = seconds to compile "
        "the 1-step / scan program; *XLA temp* = temporary buffers of one step (MiB, "
        "`memory_analysis`); *RSS* = peak resident memory of the whole process (MiB, incl. "
        "torch); *torch MFU* = the reference's analytic matmul FLOPs per step × its steps/s ÷ "
        "the same peak; *ratio bound* = the ratio jax would reach at 100 % MFU (peak ÷ jax "
        "FLOPs per step ÷ torch steps/s), the roofline no rewrite of the same FLOPs can beat; "
        "*guard cost* = the share of the scan's throughput that the finite-update check costs "
        "(against the same scan built without it, same rounds; – for rows measured before it "
        "was reported).",
        "",
    ]


def _read_rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_results(rows: list[dict]) -> None:
    os.makedirs(_OUT_DIR.value, exist_ok=True)
    jsonl = os.path.join(_OUT_DIR.value, "step_throughput.jsonl")
    with open(jsonl, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(_OUT_DIR.value, "step_throughput.md"), "w", encoding="utf-8") as f:
        f.write(markdown(rows) + "\n")


def sweep() -> None:
    """Runs the sweep's settings one by one, updating the result files after each."""
    jsonl = os.path.join(_OUT_DIR.value, "step_throughput.jsonl")
    rows = _read_rows(jsonl)
    order = [s["name"] for s in sweep_settings(_GROUPS.value)]
    for setting in sweep_settings(_GROUPS.value):
        row = run_setting(setting)
        row["repeats"] = _REPEATS.value
        rows = [r for r in rows if r.get("name") != row["name"]] + [row]
        known = [s["name"] for s in sweep_settings(DEFAULT_GROUPS)]
        rank = {name: i for i, name in enumerate(known + order)}
        rows.sort(key=lambda r: rank.get(r.get("name"), len(rank)))
        _write_results(rows)
        _log(
            f"   -> {row.get('error') or ''}"
            f"jax {row.get('jax_steps_per_sec', row.get('vmapped_seed_steps_per_sec', 0)):.2f} "
            f"torch {row.get('torch_steps_per_sec', 0):.2f} ratio {row.get('ratio', 0):.2f} "
            f"mfu {row.get('mfu', 0):.2f}"
        )


DEFAULT_GROUPS = ("configs", "labels", "batch", "dtype", "seeds", "devices")


def _require_torch() -> None:
    """Exits with the install line when PyTorch modes are asked for and torch is missing."""
    if not [m for m in _TORCH.value if m != "none"]:
        return
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit(
            "error: the PyTorch side of the benchmark needs torch, which is not installed. "
            'Install it with: pip install torch==2.13.0 && pip install -e ".[bench]" '
            "(a CPU build), or pass --torch=none to time the JAX program alone."
        )


def main(argv) -> None:
    del argv
    _require_torch()  # before anything compiles
    config = _CONFIG.value
    if config is None:
        sweep()
        return
    row = measure(config)
    row["repeats"] = _REPEATS.value
    if not _JSON.value:
        for key in (
            "name",
            "jax_steps_per_sec",
            "jax_steps_per_sec_call1",
            "torch_steps_per_sec",
            "ratio",
            "mfu",
            "flops_per_step",
            "matmul_peak_flops",
            "compile_seconds",
            "compile_seconds_scan",
            "xla_temp_bytes",
            "maxrss_mb",
            "seeds_speedup",
        ):
            if key in row:
                _log(f"{key:>24s}: {row[key]}")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    app.run(main)
