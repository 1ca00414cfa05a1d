"""The optuna study: trials as training runs, their objective, pruning, and resuming.

`run_study` asks optuna's TPE sampler for parameters, trains each trial as an ordinary run
(`train.train_and_evaluate` in `workdir/trials/NNNN/`), and tells optuna the trial's `Objective`:
a validation number of its best epoch (test numbers are never read). After every epoch the trial
reports its best validation selection score so far (`val_selection`: the mean of the
`selection_metrics`, each at its best threshold, the trainer's best-epoch criterion) and the
pruner may stop it.

The study lives in `workdir/optuna.db`, so a second run with the same command continues it: a
trial left RUNNING by a killed process, or stopped by a signal or the timeout, is marked failed
and its parameters are enqueued again; the new trial takes over the old one's directory and the
training run resumes from its checkpoint. One process works on a workdir at a time (its lock).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import ml_collections
from absl import logging

from cgmvae_jax import data as data_lib
from cgmvae_jax import metrics, train
from cgmvae_jax import workdir as workdir_lib
from cgmvae_jax.tuning import report
from cgmvae_jax.tuning import space as space_lib

MISSING_OPTUNA = (
    'Hyper-parameter tuning needs optuna: pip install -e ".[tune]" (or pip install "optuna>=4,<6").'
)

# The per-epoch validation number a trial reports (the trainer's best-epoch criterion).
PRUNING_KEY = "val_selection"


def import_optuna():
    """optuna, or an ImportError that says how to install it."""
    try:
        import optuna
    except ImportError as e:
        raise ImportError(MISSING_OPTUNA) from e
    return optuna


@dataclasses.dataclass(frozen=True)
class Objective:
    """A trial's score: the mean of validation `metrics` under `protocol`, at its best epoch.

    The best epoch is the trainer's choice (`config.selection_metrics` over
    `config.selection_window` epochs). Only `results["val"]` is read.
    """

    protocol: str = "val_per_metric"
    metrics: tuple[str, ...] = ("macro_f1", "example_f1")

    def __post_init__(self):
        if self.protocol not in metrics.PROTOCOLS:
            raise ValueError(
                f"--protocol={self.protocol}: must be one of {', '.join(metrics.PROTOCOLS)}."
            )
        unknown = [m for m in self.metrics if m not in metrics.METRIC_NAMES]
        if unknown or not self.metrics:
            raise ValueError(
                f"--metrics={','.join(self.metrics)}: name one or more of "
                f"{', '.join(metrics.METRIC_NAMES)}."
            )

    def __call__(self, results: dict) -> float:
        val = results["val"][self.protocol]
        return math.fsum(float(val[m]) for m in self.metrics) / len(self.metrics)

    def __str__(self) -> str:
        what = self.metrics[0] if len(self.metrics) == 1 else f"mean({', '.join(self.metrics)})"
        return f"validation {what} under {self.protocol} at the best epoch"


@dataclasses.dataclass
class _Context:
    """What every trial of one `run_study` call shares."""

    base: ml_collections.ConfigDict
    workdir: str
    space: dict[str, space_lib.Param]
    objective: Objective
    deadline: float | None


class _DeadlineReached(Exception):
    """The timeout passed; the running trial stops after its epoch's checkpoint."""


# Over 80 lines with its docstring (every argument of the search is documented).
def run_study(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    trials: int,
    timeout: float | None = None,
    space: list[str] | tuple[str, ...] | None = None,
    objective: Objective = Objective(),
    pruner="median",
    prune_warmup: int | None = None,
    prune_startup: int = 5,
    seed: int = 0,
    startup_trials: int = 10,
    study_name: str | None = None,
    command: str | None = None,
    write_config: str | None = None,
) -> dict:
    """Searches hyper-parameters on validation until `trials` trials have finished.

    Args:
      config: The base config of every trial (a trial overrides the fields of its space).
      workdir: The study directory: optuna.db, trials/NNNN/, trials.csv, trials.md and the
        winner's config file `<study_name>_tuned.py`.
      trials: Finished trials (complete, pruned, or failed on their own) in total, counting
        those of earlier runs.
      timeout: Seconds after which this call stops; the running trial stops after its current
        epoch and resumes in the next call.
      space: Names of `space.SPACE` fields to search (default: its default entries).
      objective: The score to maximise.
      pruner: "median" (optuna's MedianPruner, see `make_pruner`), "none", or an optuna pruner.
      prune_warmup: Epochs a trial trains before it may be pruned (default: restart_period).
      prune_startup: Complete trials before any trial is pruned.
      seed: Seed of the TPE sampler (the models use `config.seed`).
      startup_trials: Random trials before TPE models the results.
      study_name: The study's name (default: the data set's name).
      command: The command line, quoted in the config file and trials.md.
      write_config: Also copy the winner's config file here (e.g. configs/yeast_tuned.py).

    Returns:
      A summary: {"study", "finished", "counts", "best" (None or {"number", "value",
      "params", "best_epoch", "workdir"}), "stopped" (None or "timeout"), "files"}.
    """
    optuna = import_optuna()
    if int(trials) < 1:
        raise ValueError(f"--trials={trials}: must be at least 1.")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"--timeout={timeout}: must be a positive number of seconds.")
    workdir = os.path.abspath(workdir)
    study_name = study_name or os.path.splitext(os.path.basename(str(config.dataset)))[0]
    searched = space_lib.select(space)
    space_lib.trial_config(config, {})  # validates the base config before loading data
    _, splits = data_lib.load_from_config(config)
    searched = space_lib.fit_to_data(searched, len(splits.train_x))
    pruner = make_pruner(optuna, pruner, config, prune_warmup, prune_startup)
    os.makedirs(os.path.join(workdir, "trials"), exist_ok=True)
    outputs = report.Outputs(
        workdir, study_name, config, searched, objective, command, write_config
    )
    lock = workdir_lib.WorkdirLock(workdir)
    lock.acquire()
    try:
        study = _open_study(optuna, workdir, study_name, _identity(config, searched, objective))
        study.sampler = optuna.samplers.TPESampler(
            # A new stream per call: a resumed study does not draw its first trials again.
            seed=int(seed) + len(study.get_trials(deepcopy=False)),
            n_startup_trials=int(startup_trials),
            multivariate=True,
        )
        study.pruner = pruner
        _requeue_interrupted(optuna, study)
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        context = _Context(config, workdir, searched, objective, deadline)
        stopped = _optimize(optuna, study, context, int(trials), outputs)
    finally:
        lock.release()
    files = outputs.write(study)
    trials_now = study.get_trials(deepcopy=False)
    return {
        "study": study_name,
        "finished": sum(map(report.is_finished, trials_now)),
        "counts": report.state_counts(trials_now),
        "best": outputs.best_summary(study),
        "stopped": stopped,
        "files": files,
    }


def make_pruner(optuna, kind, config, warmup: int | None, startup: int):
    """The pruner of a study: "median", "none", or an optuna pruner passed through.

    MedianPruner stops a trial whose best validation score so far is below the median of the
    complete trials at the same epoch, once it has trained `warmup` epochs (default: the first
    cosine cycle, restart_period) and `startup` trials have completed; at least 3 complete
    trials must have reached that epoch.
    """
    if not isinstance(kind, str):
        return kind
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind != "median":
        raise ValueError(f"--pruner={kind}: must be median or none.")
    warmup = int(config.restart_period) if warmup is None else int(warmup)
    if warmup < 1 or startup < 0:
        raise ValueError("--prune_warmup must be >= 1 and --prune_startup >= 0.")
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(startup), n_warmup_steps=warmup - 1, n_min_trials=3
    )


def _identity(config, searched, objective) -> dict:
    """What a study is made of, saved with it and checked when it is continued (JSON values)."""
    base = {
        k: v
        for k, v in workdir_lib.config_dict(config).items()
        if k not in space_lib.RUNTIME_FIELDS
    }
    return json.loads(
        json.dumps(
            {
                "objective": str(objective),
                "space": {k: p.describe() for k, p in searched.items()},
                "base_config": base,
            }
        )
    )


def _open_study(optuna, workdir: str, name: str, identity: dict):
    """Creates or loads the study in workdir/optuna.db; refuses one made with other settings."""
    storage = f"sqlite:///{os.path.join(workdir, 'optuna.db')}"
    others = [n for n in optuna.study.get_all_study_names(storage) if n != name]
    if others:
        raise ValueError(
            f"{workdir} holds the study {others[0]!r}, not {name!r}: use another --workdir."
        )
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"{workdir}: the study {name!r} minimises; use another --workdir.")
    saved = study.user_attrs.get("identity")
    if saved is None:
        study.set_user_attr("identity", identity)
        return study
    problems = [
        f"{key} {saved[key]} (study) != {identity[key]} (now)"
        for key in ("objective", "space")
        if saved[key] != identity[key]
    ]
    old, new = saved["base_config"], identity["base_config"]
    problems += [
        f"--config.{k}={old[k]!r} (study) != {new[k]!r} (now)"
        for k in sorted(set(old) & set(new))
        if old[k] != new[k]
    ]
    if problems:
        raise ValueError(
            f"{workdir} holds a study made with other settings: {'; '.join(problems)}. Run it "
            "with the same --config and search flags, or use a new --workdir."
        )
    return study


def _requeue_interrupted(optuna, study) -> None:
    """Fails the trials left RUNNING by a dead process and enqueues every interrupted trial.

    An interrupted trial is a FAIL without an "error" attribute; it is enqueued once (with
    `resumes` = its number), and the trial that runs it resumes its directory.
    """
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        logging.warning("Trial %d was left running by a stopped process: resuming it.", t.number)
        study.tell(t.number, state=state.FAIL)
    every = study.get_trials(deepcopy=False)
    resumed = {t.user_attrs.get("resumes") for t in every}
    for t in every:
        if t.state == state.FAIL and "error" not in t.user_attrs and t.number not in resumed:
            study.enqueue_trial(t.params, user_attrs={"resumes": t.number})


def _optimize(optuna, study, context: _Context, trials: int, outputs) -> str | None:
    """Runs trials until enough have finished; returns "timeout" when the deadline stops it."""
    while sum(map(report.is_finished, study.get_trials(deepcopy=False))) < trials:
        if context.deadline is not None and time.monotonic() >= context.deadline:
            return "timeout"
        trial = study.ask()
        try:
            _run_trial(optuna, study, trial, context)
        except _DeadlineReached:
            return "timeout"
        finally:
            outputs.write(study)
            logging.info("%s", outputs.progress_line(study, trial.number))
    return None


def _run_trial(optuna, study, trial, context: _Context) -> None:
    """Trains one trial and tells optuna how it ended."""
    state = optuna.trial.TrialState
    try:
        params = space_lib.suggest(trial, context.space)
        config = space_lib.trial_config(context.base, params)
        workdir = _trial_workdir(study, trial, context.workdir)
        reporter = _EpochReporter(optuna, trial, int(config.num_epochs), context.deadline)
        reporter.replay(workdir)
        results = train.train_and_evaluate(config, workdir, on_epoch=reporter)
    except optuna.TrialPruned:
        study.tell(trial, state=state.PRUNED)
        return
    except FloatingPointError as e:  # NaN/inf loss or predictions: a result of the parameters
        trial.set_user_attr("error", str(e)[:500])
        study.tell(trial, state=state.FAIL)
        return
    except (Exception, KeyboardInterrupt):  # signal, timeout, full disk, ...: resume it later
        study.tell(trial, state=state.FAIL)
        _requeue_interrupted(optuna, study)
        raise
    trial.set_user_attr("best_epoch", int(results["best_epoch"]))
    study.tell(trial, context.objective(results))


def _trial_workdir(study, trial, root: str) -> str:
    """The trial's directory; a trial that resumes another takes over that one's directory."""
    path = report.trial_dir(root, trial.number)
    source = trial.user_attrs.get("resumes")
    by_number = None
    while source is not None and not os.path.exists(path):
        if os.path.exists(report.trial_dir(root, source)):
            os.rename(report.trial_dir(root, source), path)
            break
        # That trial was itself a resumption stopped before it moved the directory.
        by_number = by_number or {t.number: t for t in study.get_trials(deepcopy=False)}
        source = by_number[source].user_attrs.get("resumes")
    return path


class _EpochReporter:
    """A trial's `on_epoch`: reports the best validation score so far, prunes, stops at the
    deadline.

    The running best is reported (not the epoch's value) because it is what the trial would
    deliver if stopped here, and it does not dip after a warm restart of the learning rate.
    """

    def __init__(self, optuna, trial, num_epochs: int, deadline: float | None):
        self.optuna = optuna
        self.trial = trial
        self.num_epochs = num_epochs
        self.deadline = deadline
        self.best = -math.inf
        self.reported = set()

    def replay(self, workdir: str) -> None:
        """Reports the epochs a resumed trial's directory already holds."""
        path = os.path.join(workdir, "metrics.jsonl")
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    self._report(json.loads(line))
                except (json.JSONDecodeError, KeyError):
                    break  # a torn last line: the resumed run drops it too

    def _report(self, record: dict) -> None:
        epoch = int(record["epoch"])
        self.best = max(self.best, float(record[PRUNING_KEY]))
        if epoch not in self.reported:  # a resumed run repeats an unsaved last epoch
            self.trial.report(self.best, epoch)
            self.reported.add(epoch)

    def __call__(self, record: dict) -> None:
        self._report(record)
        epoch = int(record["epoch"])
        if epoch + 1 >= self.num_epochs:
            return  # the run is complete: keep it
        if self.trial.should_prune():
            raise self.optuna.TrialPruned(f"pruned after epoch {epoch}")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _DeadlineReached()
