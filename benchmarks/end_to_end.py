r"""End-to-end wall time of a training run: cgmvae_jax against the official PyTorch C-GMVAE code.

    python benchmarks/end_to_end.py --config=configs/yeast.py --data_dir=../shared/datasets \
        --official_dir=PATH/C-GMVAE --official_python=PATH/venv/bin/python --quiet_load=1.0

Each of `--repeats` rounds runs three subprocesses in turn, seeded with the round number:
`official` (`<official_python> <official_dir>/main.py --mode train ...` in a fresh folder, where
it writes summary/ and model/; skipped without `--official_dir`, a checkout of
https://github.com/JunwenBai/C-GMVAE run with a Python that has torch and its requirements),
`ours_cold` (`launch/train.py` with `CGMVAE_CACHE` set to a new, empty folder: every program
compiles) and `ours_warm` (the same cache folder again: programs load from it), each ours into a
fresh workdir. The official code is only run, never imported or copied.

Both see the same rows: the config's data set, split and standardised by
`cgmvae_jax.data.load_from_config`, is written in the MPVAE layout (`<name>_data.npy`, float32
[n, L + F] = [labels | features], train, val, test rows in that order; int64
`<name>_{train,val,test}_idx.npy`). Official flags come from the config (`OFFICIAL_FLAGS`);
fields the official code fixes (hidden sizes, KL weight 6, ...) that the config changes are
listed as `mismatched_fields`. `--num_epochs=2 --repeats=1` is a quick check of the set-up.

Reported per run: wall seconds of the subprocess (start-up, compiling, training, evaluation),
ours' `compile_seconds`, `train_seconds` and `steps_per_sec` from results.json, the 1-minute load
average before and after; medians per program and the median per-round ratios ours / official
of wall time (below 1: ours is faster). Outputs: one JSON line (the summary, last line of
stdout), `<out>/end_to_end.json` (every run, summary, machine) and `<out>/end_to_end.md`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from benchmarks import hardware
from cgmvae_jax import config_lib, data

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("official", "ours_cold", "ours_warm")
# config field=official main.py flag. dropout_rate=keep_prob: the official code passes keep_prob
# to nn.Dropout(p=...), so despite its name it is the drop probability.
OFFICIAL_FLAGS = (
    "learning_rate=learning_rate batch_size=batch_size embedding_dim=emb_size "
    "latent_dim=latent_dim dropout_rate=keep_prob bce_weight=nll_coeff num_epochs=max_epoch "
    "restart_period=T0 restart_mult=T_mult eta_min=eta_min"
)
# Fields the official code fixes (no flag): its values are `config_lib.base_config()`'s.
FIXED_FIELDS = "feature_hidden label_hidden decoder_hidden kl_weight contrastive_weight "
FIXED_FIELDS += "temperature weight_decay prior model init"
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command-line flags (defined only when run as a script, so tests can import this)."""
    config_flags.DEFINE_config_file(
        "config", os.path.join(_REPO, "configs", "yeast.py"), "A configs/*.py file."
    )
    flags.DEFINE_string("data_dir", "", "Data folder (default: the config's data_dir).")
    flags.DEFINE_integer("num_epochs", 0, "Override the config's num_epochs (0: keep it).")
    flags.DEFINE_integer("repeats", 3, "Rounds (official, ours cold, ours warm).")
    flags.DEFINE_string("official_dir", "", "Checkout of the official C-GMVAE code ('': skip).")
    flags.DEFINE_string("official_python", sys.executable, "Python with torch for the official.")
    flags.DEFINE_float("quiet_load", 0.0, "Before each run, wait for a 1-min load below this.")
    flags.DEFINE_integer("quiet_wait", 1800, "Longest wait for --quiet_load (s).")
    flags.DEFINE_integer("timeout", 7200, "Seconds per run before it is stopped.")
    flags.DEFINE_string("out", os.path.join(_REPO, "benchmarks", "results"), "Output folder.")


def check_official(official_dir: str, python: str) -> str:
    """Exits with one line when the official side cannot run; returns its torch version."""
    if not os.path.isfile(os.path.join(official_dir, "main.py")):
        sys.exit(
            f"error: --official_dir={official_dir} has no main.py; pass a checkout of the "
            "official code (git clone https://github.com/JunwenBai/C-GMVAE) or leave "
            "--official_dir out to time cgmvae_jax alone."
        )
    try:
        probe = subprocess.run(
            [python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True
        )
    except OSError:
        probe = None
    if probe is None or probe.returncode != 0:
        sys.exit(
            f"error: --official_python={python} cannot import torch; pass a Python with torch "
            "and the official code's requirements installed."
        )
    return probe.stdout.strip()


def write_mpvae(splits, directory: str, name: str) -> dict:
    """Writes `splits` in the MPVAE layout; returns the paths by official flag name."""
    parts = [(splits.train_x, splits.train_y), (splits.val_x, splits.val_y)]
    parts.append((splits.test_x, splits.test_y))
    data = np.concatenate([np.concatenate([y, x], axis=1) for x, y in parts]).astype(np.float32)
    paths = {"data_dir": os.path.join(directory, f"{name}_data.npy")}
    np.save(paths["data_dir"], data)
    start = 0
    for flag, part, (x, _) in zip(
        ("train", "valid", "test"), ("train", "val", "test"), parts, strict=True
    ):
        paths[f"{flag}_idx"] = os.path.join(directory, f"{name}_{part}_idx.npy")
        np.save(paths[f"{flag}_idx"], np.arange(start, start + len(x), dtype=np.int64))
        start += len(x)
    return paths


def official_flags(config, paths: dict, name: str, num_labels: int, num_features: int, seed):
    """The official main.py's training flags for `config` (see the module docstring)."""
    values = {"mode": "train", "dataset": name, **paths, "label_dim": num_labels}
    values.update(feature_dim=num_features, meta_offset=0, seed=seed)
    for pair in OFFICIAL_FLAGS.split():
        field, flag = pair.split("=")
        values[flag] = config[field]
    return [item for k, v in values.items() for item in (f"--{k}", str(v))]


def mismatched_fields(config) -> list[str]:
    """Config fields whose value the official code cannot take (it has them fixed)."""
    base = config_lib.base_config()
    diff = [f for f in FIXED_FIELDS.split() if f in config and config[f] != base[f]]
    return [f"{f}={config[f]!r} (official: {base[f]!r})" for f in diff]


def timed_run(program: str, cmd: list, cwd: str, env: dict, logs: str) -> dict:
    """Runs `cmd`, stdout/stderr to `logs`.{out,err}; exits with the log's tail on failure."""
    waited = hardware.wait_for_quiet(FLAGS.quiet_load, FLAGS.quiet_wait, log=logging.info)
    record = {"program": program, "waited_seconds": waited, "load_before": hardware.load_average()}
    logging.info("== %s: %s", program, shlex.join(cmd))
    with open(logs + ".out", "w") as out, open(logs + ".err", "w") as err:
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=cwd, env=env, stdout=out, stderr=err, timeout=FLAGS.timeout
            )
        except subprocess.TimeoutExpired:
            sys.exit(f"error: {program} took longer than --timeout={FLAGS.timeout} s")
        record["wall_seconds"] = round(time.perf_counter() - start, 2)
    record["load_after"] = hardware.load_average()
    if proc.returncode != 0:
        with open(logs + ".err") as f:
            tail = "".join(f.readlines()[-15:])
        sys.exit(f"error: {program} exited with {proc.returncode}:\n{tail}")
    logging.info("   %.1f s", record["wall_seconds"])
    return record


def ours_results(workdir: str) -> dict:
    """compile_seconds, train_seconds, steps_per_sec of a finished workdir (those present)."""
    try:
        with open(os.path.join(workdir, "results.json")) as f:
            results = json.load(f)
    except (OSError, ValueError):
        return {}
    keys = ("compile_seconds", "train_seconds", "steps_per_sec")
    return {
        k: round(float(results[k]), 2) for k in keys if isinstance(results.get(k), (int, float))
    }


def run_round(r: int, tmp: str, ours_cmd: list, official_cmd) -> list[dict]:
    """One round: official (if any), ours cold, ours warm; seed r + 1 for both."""
    seed, rdir, runs = r + 1, os.path.join(tmp, f"round{r + 1}"), []
    os.makedirs(rdir)
    if official_cmd is not None:  # seed -> command
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        cmd, cwd = official_cmd(seed), os.path.join(rdir, "official")
        os.makedirs(cwd)  # the official code writes summary/ and model/ here
        runs.append(timed_run("official", cmd, cwd, env, cwd + "_log"))
    for kind in ("cold", "warm"):
        workdir = os.path.join(rdir, f"ours_{kind}")
        env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
        env["CGMVAE_CACHE"] = os.path.join(rdir, "cache")  # empty for cold, filled for warm
        cmd = ours_cmd + [f"--workdir={workdir}", f"--config.seed={seed}"]
        runs.append(timed_run(f"ours_{kind}", cmd, _REPO, env, workdir + "_log"))
        runs[-1].update(ours_results(workdir))
    for run in runs:
        run.update(round=r + 1, seed=seed)
    return runs


def _median(runs: list[dict], program: str, key: str):
    values = [r[key] for r in runs if r["program"] == program and r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(runs: list[dict]) -> dict:
    """Medians per program and the medians of per-round ours / official wall-time ratios."""
    out = {}
    for program in PROGRAMS:
        for key in ("wall_seconds", "compile_seconds", "train_seconds"):
            if (value := _median(runs, program, key)) is not None:
                out[f"{program}_{key}"] = value
    walls = {p: [r["wall_seconds"] for r in runs if r["program"] == p] for p in PROGRAMS}
    for kind in ("cold", "warm"):  # every round runs all programs, in order
        if walls["official"] and walls[f"ours_{kind}"]:
            ratio = hardware.median_ratio(walls, f"ours_{kind}", "official")
            out[f"ours_{kind}_over_official"] = round(ratio, 4)
    return out


def _cell(value) -> str:
    return "" if value is None else f"{value:.1f}"


def markdown(result: dict) -> str:
    """The result file: command, date and machine, one row per run, medians and ratios."""
    m, s = result["machine"], result["summary"]
    lines = [
        "# End-to-end training wall time: cgmvae_jax and the official C-GMVAE code",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Date (UTC) {m.get('date_utc')}; {m.get('cpu_model')}, {m.get('available_cores')} "
        f"cores, {m.get('ram_gb')} GiB; jax {m.get('jax_version')}; official side: torch "
        f"{result.get('official_torch_version') or '(not run)'}; config {result['config']}, "
        f"num_epochs {result['num_epochs']}. Wall = the whole subprocess.",
        "",
        "| round | program | wall s | compile s | train s | load before → after |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        cells = [_cell(r.get(k)) for k in ("wall_seconds", "compile_seconds", "train_seconds")]
        load = f"{r['load_before']:.2f} → {r['load_after']:.2f}"
        lines.append(f"| {r['round']} | {r['program']} | {' | '.join(cells)} | {load} |")
    for program in PROGRAMS:
        keys = ("wall_seconds", "compile_seconds", "train_seconds")
        if f"{program}_wall_seconds" in s:
            cells = [_cell(s.get(f"{program}_{k}")) for k in keys]
            lines.append(f"| median | {program} | {' | '.join(cells)} | |")
    lines.append("")
    for kind in ("cold", "warm"):
        if f"ours_{kind}_over_official" in s:
            lines.append(
                f"- ours {kind} ÷ official wall time (median of per-round ratios; below 1: ours "
                f"is faster): {s[f'ours_{kind}_over_official']:.3f}"
            )
    if result.get("mismatched_fields"):
        lines.append("- fields the official code fixes: " + "; ".join(result["mismatched_fields"]))
    return "\n".join(lines) + "\n"


def _prepare(config, tmp: str):
    """Writes the official layout of the config's split; returns seed -> official command."""
    dataset, splits = data.load_from_config(config)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset.name or "data")
    paths = write_mpvae(splits, tmp, name)
    num_labels, num_features = splits.train_y.shape[1], splits.train_x.shape[1]
    main_py = os.path.join(os.path.abspath(FLAGS.official_dir), "main.py")
    python = FLAGS.official_python  # absolute when a path: the official run has its own cwd
    python = os.path.abspath(python) if os.sep in python else python
    return lambda seed: [
        python,
        main_py,
        *official_flags(config, paths, name, num_labels, num_features, seed),
    ]


def main(argv) -> None:
    del argv
    config = FLAGS.config
    if FLAGS.num_epochs:
        config.num_epochs = FLAGS.num_epochs
    data_dir = FLAGS.data_dir or config.data_dir or data.default_data_dir()
    config.data_dir = os.path.abspath(os.path.expanduser(data_dir))
    if data.loader.looks_like_path(config.dataset):  # absolute: ours runs in the repository
        config.dataset = os.path.abspath(os.path.expanduser(config.dataset))
    torch_version = None
    if FLAGS.official_dir:
        torch_version = check_official(FLAGS.official_dir, FLAGS.official_python)
    overrides = dict(config_flags.get_override_values(FLAGS["config"]))
    overrides.update(num_epochs=config.num_epochs, data_dir=config.data_dir, progress=False)
    overrides.update(dataset=config.dataset)
    config_path = os.path.abspath(config_flags.get_config_filename(FLAGS["config"]))
    ours_cmd = [sys.executable, os.path.join(_REPO, "launch", "train.py")]
    ours_cmd += [f"--config={config_path}", *(f"--config.{k}={v}" for k, v in overrides.items())]
    runs = []
    with tempfile.TemporaryDirectory(prefix="end_to_end_") as tmp:
        official_cmd = _prepare(config, tmp) if FLAGS.official_dir else None
        for r in range(FLAGS.repeats):
            runs += run_round(r, tmp, ours_cmd, official_cmd)
    result = {
        "command": shlex.join(["python", "benchmarks/end_to_end.py", *sys.argv[1:]]),
        "config": os.path.relpath(config_path, _REPO),
        "num_epochs": int(config.num_epochs),
        "repeats": FLAGS.repeats,
        "official_torch_version": torch_version,
        "mismatched_fields": mismatched_fields(config) if FLAGS.official_dir else [],
        "machine": hardware.machine_info(),
        "runs": runs,
        "summary": summarize(runs),
    }
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "end_to_end.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(FLAGS.out, "end_to_end.md"), "w", encoding="utf-8") as f:
        f.write(markdown(result))
    keys = ("date_utc", "cpu_model", "jax_version")
    line = {**result["summary"], "num_epochs": result["num_epochs"], "repeats": FLAGS.repeats}
    print(json.dumps({**line, **{k: result["machine"].get(k) for k in keys}}), flush=True)


if __name__ == "__main__":
    define_flags()
    app.run(main)
