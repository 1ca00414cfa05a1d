"""The training loop: `train_and_evaluate(config, workdir)` and the steps it takes.

Shaped like the Flax examples' loop: for every epoch, train (the compiled programs of
`cgmvae_jax.trainer`), check the steps were finite, validate and keep the best epoch
(`cgmvae_jax.evaluation`), log a metrics.jsonl line and checkpoint (`cgmvae_jax.checkpoint`);
at the end score the best parameters and write `results.json`. The workdir's lock, stop
signals and files are `cgmvae_jax.workdir`'s; the run's state is the `Progress` dataclass,
saved with every checkpoint.

On a run of several processes (`sharding.initialize_distributed`) every process runs this loop
over the global device mesh; process 0 alone takes the lock and writes config.json,
metrics.jsonl, TensorBoard events, model/ and results.json, while every process takes part in
each checkpoint save and restore. Host decisions that launch collectives (checkpoint now, stop
now) are agreed with `cgmvae_jax.processes`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from cgmvae_jax import checkpoint as checkpoint_lib
from cgmvae_jax import compilation, config_lib, evaluation, model_file, processes, writers
from cgmvae_jax import data as data_lib
from cgmvae_jax import feed as feed_lib
from cgmvae_jax import trainer as trainer_lib
from cgmvae_jax import workdir as workdir_lib

Trainer = trainer_lib.Trainer
TrainState = trainer_lib.TrainState

# The errors `train_and_evaluate` raises besides ValueError (bad config or data) and OSError.
NonFiniteError = evaluation.NonFiniteError
TrainingInterrupted = workdir_lib.TrainingInterrupted
WorkdirLockedError = workdir_lib.WorkdirLockedError
OutputWriteError = workdir_lib.OutputWriteError


# --------------------------------------------------------------------------------------------
# The run's state.


@dataclasses.dataclass
class Progress:
    """What a run has done, saved with every latest checkpoint (as JSON).

    Attributes:
      epoch: Last finished epoch (-1 before the first).
      selection: Best epoch, score and threshold of every seed so far.
      train_seconds: Wall time of the finished epochs (all processes that trained them).
      steps: Optimizer steps taken.
      step_seconds: Wall time of the epochs that compiled nothing (for `steps_per_sec`).
      timed_steps: Optimizer steps of those epochs.
      skipped_steps: Non-finite updates skipped (`config.skip_nonfinite`).
    """

    epoch: int
    selection: evaluation.Selection
    train_seconds: float = 0.0
    steps: int = 0
    step_seconds: float = 0.0
    timed_steps: int = 0
    skipped_steps: int = 0

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch,
            **dataclasses.asdict(self.selection),
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "step_seconds": self.step_seconds,
            "timed_steps": self.timed_steps,
            "skipped_steps": self.skipped_steps,
        }

    @classmethod
    def from_json(cls, saved: dict) -> Progress:
        selection = evaluation.Selection.from_json(saved)
        own = {f.name for f in dataclasses.fields(cls)} - {"selection"}
        return cls(selection=selection, **{k: v for k, v in saved.items() if k in own})


@dataclasses.dataclass
class _Run:
    """Everything one training process works with (the loop's state)."""

    config: ml_collections.ConfigDict
    workdir: str
    dataset: Any
    splits: Any
    trainer: Trainer
    ckpt: checkpoint_lib.Checkpointer
    stop: workdir_lib.StopSignals
    state: TrainState
    best_params: Any
    progress: Progress
    feed: feed_lib.Feed | None = None
    first_epoch: int = 0
    compile_seconds_at_start: float = 0.0
    last_save: float = dataclasses.field(default_factory=time.monotonic)
    best_unsaved: bool = False  # a seed improved since the last checkpoint
    saved_epoch: int = -1  # the epoch of the latest checkpoint on disk

    def latest_text(self) -> str:
        if self.saved_epoch < 0:
            return "no checkpoint was written yet"
        return f"the latest checkpoint holds epoch {self.saved_epoch}"

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.workdir, "metrics.jsonl")

    @property
    def results_path(self) -> str:
        return os.path.join(self.workdir, "results.json")


# --------------------------------------------------------------------------------------------
# The epoch loop.


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    dataset: data_lib.Dataset | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> dict:
    """Trains, selects the best epoch on validation, and writes `results.json`.

    Running again on the same workdir resumes from the latest checkpoint; a finished run
    returns its results without training. A start that fails before training anything leaves
    no new workdir behind.

    Args:
      config: The run configuration (`config_lib.base_config()` fields).
      workdir: Output directory (created if needed).
      dataset: Train on this in-memory data set (`data.from_arrays`) instead of loading
        `config.dataset`; its split follows the config as a loaded one's would.
      on_epoch: Called after every epoch with its metrics.jsonl record (e.g. to prune a
        hyper-parameter trial). An exception it raises ends the run after the epoch is
        checkpointed, so a later call resumes right after it.

    Returns:
      The content of `results.json`.
    """
    config_lib.validate(config)
    config = config_lib.with_absolute_paths(config)
    if config.compilation_cache:
        compilation.enable_cache()
    workdir = os.path.abspath(workdir)
    primary = processes.is_primary()
    created = primary and not os.path.exists(workdir)
    lock = workdir_lib.WorkdirLock(workdir)
    try:
        with processes.fail_together("taking the workdir's lock"):
            if primary:  # one lock for the run, held by process 0
                os.makedirs(workdir, exist_ok=True)
                lock.acquire()
        with workdir_lib.StopSignals() as stop:
            return _train_and_evaluate(config, workdir, stop, dataset, on_epoch)
    except BaseException:
        if created:
            workdir_lib.remove_if_unused(workdir)
        raise
    finally:
        lock.release()


def _train_and_evaluate(config, workdir: str, stop, dataset, on_epoch) -> dict:
    run = _start(config, workdir, stop, dataset)
    if isinstance(run, dict):
        return run  # the results of a finished run
    primary = processes.is_primary()
    events = writers.EventWriter(
        workdir,
        enabled=bool(config.tensorboard) and primary,
        first_epoch=run.first_epoch,
        first_seed=int(config.seed),
    )
    with run.ckpt:
        try:
            bar = _progress_bar(config, run.first_epoch) if primary else None
            for epoch in range(run.first_epoch, int(config.num_epochs)):
                t0 = time.perf_counter()
                step_metrics = _train_epoch(run, epoch)
                seconds = time.perf_counter() - t0
                _check_finite_steps(run, epoch, step_metrics)
                score, improved = _validate(run, epoch)
                record = _epoch_record(run, epoch, seconds, step_metrics, score)
                _save_epoch(run, epoch, record, improved)
                events.write(record)
                if primary:
                    _report(bar, record)
                if on_epoch is not None:
                    try:
                        on_epoch(record)
                    except BaseException:
                        _checkpoint(run, epoch)
                        raise
            if bar is not None:
                bar.close()
            return _write_results(run)
        finally:
            events.close()


def _start(config, workdir: str, stop, dataset) -> _Run | dict:
    """Loads the data, builds the trainer and restores the latest checkpoint, if any.

    Returns the finished run's results instead when there is nothing left to train.
    """
    compile_seconds = compilation.compile_seconds()
    primary = processes.is_primary()
    with processes.fail_together("starting the run"):
        if primary:
            workdir_lib.check_config_compatible(workdir, config)
        dataset, splits = data_lib.load_from_config(config, dataset)
        config_lib.validate_against_data(config, splits)
        if primary:
            workdir_lib.write_json_atomic(
                os.path.join(workdir, "config.json"), workdir_lib.config_dict(config)
            )
        trainer = Trainer(
            config, splits.train_x.shape[1], splits.train_y.shape[1], len(splits.train_x)
        )
    logging.info(
        "Data %s: F=%d L=%d train/val/test = %d/%d/%d (%s)",
        dataset.name,
        splits.train_x.shape[1],
        splits.train_y.shape[1],
        splits.train_x.shape[0],
        splits.val_x.shape[0],
        splits.test_x.shape[0],
        splits.description,
    )
    state = trainer.init_state()
    run = _Run(
        config=config,
        workdir=workdir,
        dataset=dataset,
        splits=splits,
        trainer=trainer,
        ckpt=checkpoint_lib.Checkpointer(workdir, keep=int(config.keep_checkpoints), owner=True),
        stop=stop,
        state=state,
        best_params=jax.tree.map(jnp.copy, state.params),  # own buffers: the state is donated
        progress=Progress(
            -1,
            evaluation.Selection.start(
                trainer.num_seeds, config.threshold, config.selection_window
            ),
        ),
        compile_seconds_at_start=compile_seconds,
    )
    try:
        with processes.fail_together("restoring the latest checkpoint"):
            restored = run.ckpt.restore_latest(run.state, run.best_params)
        if restored is not None:
            run.state, run.best_params, saved = restored
            run.progress = Progress.from_json(saved)
            processes.check_same(run.progress.epoch, "the epoch of the restored checkpoint")
            logging.info("Resumed %s after epoch %d.", workdir, run.progress.epoch)
            if run.progress.epoch + 1 >= int(config.num_epochs) and os.path.exists(
                run.results_path
            ):
                logging.info("Run already finished; results in %s", run.results_path)
                run.ckpt.close()
                return workdir_lib.read_json(run.results_path)
        # Checkpoints of later epochs (a best one written just before a kill, or newer ones
        # after a fallback) are from epochs about to be trained again.
        run.ckpt.discard_after(run.progress.epoch)
        if primary:
            workdir_lib.truncate_metrics(run.metrics_path, run.progress.epoch)
        run.feed = feed_lib.Feed(trainer, splits, config)
    except BaseException:
        run.ckpt.close()
        raise
    run.saved_epoch = run.progress.epoch
    run.first_epoch = run.progress.epoch + 1
    return run


def _train_epoch(run: _Run, epoch: int) -> dict[str, np.ndarray]:
    """Runs the epoch's compiled calls; returns the step metrics {name: [S, steps]} on the host.

    A stop signal between two calls ends the run with the latest checkpoint on disk.
    """
    step_metrics = []
    for i, call in enumerate(run.feed.calls(epoch)):
        if i:
            _check_stop(run, mid_epoch=True)
        run.state, m = call(run.state)
        step_metrics.append(m)
    host = jax.device_get(step_metrics)
    return {k: np.concatenate([np.asarray(h[k]) for h in host], axis=1) for k in host[0]}


def _check_finite_steps(run: _Run, epoch: int, step_metrics: dict[str, np.ndarray]) -> None:
    """Stops on a non-finite update (not applied by the step), or counts it as skipped."""
    bad = ~step_metrics["finite"].astype(bool)
    if not bad.any():
        return
    seed_i, step_i = (int(v[0]) for v in np.nonzero(bad))
    terms = {k: float(v[seed_i, step_i]) for k, v in step_metrics.items() if k != "finite"}
    culprits = [k for k, v in terms.items() if not np.isfinite(v)]
    what = (
        ", ".join(culprits)
        if culprits
        else "the update (loss and gradients finite; parameters or Adam moments)"
    )
    if not run.config.skip_nonfinite:
        step = epoch * run.trainer.steps_per_epoch + step_i + 1
        raise NonFiniteError(
            f"Non-finite value at step {step} (epoch {epoch}, seed "
            f"{int(run.config.seed) + seed_i}): {what} is NaN/inf ({terms}). The update "
            f"was not applied; {run.latest_text()}. Lower "
            "--config.learning_rate, check the features for huge values "
            "(--config.standardize=True), or pass --config.skip_nonfinite=True."
        )
    run.progress.skipped_steps += int(bad.sum())
    logging.warning("Epoch %d: skipped %d non-finite update(s) (%s).", epoch, int(bad.sum()), what)


def _predict(run: _Run, params, split: str, epoch: int) -> np.ndarray:
    """Probabilities [S, N, L] of a split; NonFiniteError if any is NaN/inf."""
    probs = run.trainer.predict(params, getattr(run.splits, f"{split}_x"))
    try:
        evaluation.check_finite_predictions(
            probs, "validation" if split == "val" else split, epoch, int(run.config.seed)
        )
    except NonFiniteError as e:
        raise NonFiniteError(f"{e} {run.latest_text().capitalize()}.") from None
    return probs


def _validate(run: _Run, epoch: int) -> tuple[evaluation.EpochScore, np.ndarray]:
    """Scores the epoch on validation and keeps the parameters of the seeds it improves.

    Returns the score and which seeds improved, bool [S].
    """
    params = run.trainer.eval_params(run.state)
    score = evaluation.validate(
        _predict(run, params, "val", epoch),
        run.splits.val_y,
        float(run.config.threshold),
        config_lib.selection_metrics(run.config),
    )
    improved = run.progress.selection.update(epoch, score)
    if improved.any():
        run.best_params = run.trainer.select(improved, params, run.best_params)
    return score, improved


def _epoch_record(run: _Run, epoch: int, seconds: float, step_metrics, score) -> dict:
    """Updates the progress counters and returns the epoch's metrics.jsonl line."""
    progress = run.progress
    progress.epoch = epoch
    progress.steps += run.trainer.steps_per_epoch
    progress.train_seconds += seconds
    if epoch > run.first_epoch:  # a process's first epoch includes compiling
        progress.step_seconds += seconds
        progress.timed_steps += run.trainer.steps_per_epoch
    record = {
        "epoch": epoch,
        "step": int(progress.steps),
        "lr": float(run.trainer.learning_rates[epoch]),
        "epoch_seconds": seconds,
        "samples_per_sec": run.trainer.num_train * run.trainer.num_seeds / seconds,
    }
    for k, v in step_metrics.items():
        if k != "finite":
            record[f"train_{k}"] = float(np.nanmean(v))
    record.update(score.log_fields())
    if progress.skipped_steps:
        record["skipped_steps"] = int(progress.skipped_steps)
    return record


def _save_epoch(run: _Run, epoch: int, record: dict, improved: np.ndarray) -> None:
    """Appends the metrics line; checkpoints when due (`config.checkpoint_every_secs`).

    A checkpoint is written after the last epoch, after a stop signal, and otherwise when the
    last one is that many seconds old (0: every epoch). The metrics line goes first: a
    checkpointed epoch always has its line, and a resumed run drops the lines of epochs after
    its checkpoint. Best before latest: a kill between the two leaves a latest checkpoint
    whose best_params agree with the best directory.
    """
    if processes.is_primary():
        workdir_lib.append_jsonl(run.metrics_path, record)
    run.best_unsaved |= bool(improved.any())
    last = epoch + 1 >= int(run.config.num_epochs)
    elapsed = time.monotonic() - run.last_save
    # Every process saves or none does: a signal to any process or process clocks that differ
    # must not split them (a save is a collective).
    stopping, due = processes.any_of(
        [run.stop.received is not None, last or elapsed >= float(run.config.checkpoint_every_secs)]
    )
    if due or stopping:
        _checkpoint(run, epoch)
    if stopping and not last:
        _interrupt(run, mid_epoch=False)


def _checkpoint(run: _Run, epoch: int) -> None:
    """Writes the best (when a seed improved since the last one) and the latest checkpoint.

    On several processes every process calls it together (a save is a collective).
    """
    if run.saved_epoch == epoch:
        return
    if run.best_unsaved:
        run.ckpt.save_best(epoch, run.best_params, dataclasses.asdict(run.progress.selection))
        run.best_unsaved = False
    run.ckpt.save_latest(epoch, run.state, run.best_params, run.progress.to_json())
    run.last_save = time.monotonic()
    run.saved_epoch = epoch


def _check_stop(run: _Run, mid_epoch: bool) -> None:
    """Raises TrainingInterrupted after a signal to this or any other process of the run."""
    (stopping,) = processes.any_of([run.stop.received is not None])
    if stopping:
        _interrupt(run, mid_epoch)


def _interrupt(run: _Run, mid_epoch: bool) -> None:
    """Raises TrainingInterrupted once the latest checkpoint is on disk."""
    run.ckpt.wait()
    where = f"the partial epoch {run.progress.epoch + 1} was discarded; " if mid_epoch else ""
    signal = run.stop.received or "a signal to another process of the run"
    raise TrainingInterrupted(
        f"Stopped by {signal}: {where}{run.latest_text()}. Run the same command again to resume."
    )


def _progress_bar(config, first_epoch: int):
    if not config.progress:
        return None
    import tqdm

    return tqdm.tqdm(total=int(config.num_epochs), initial=first_epoch, desc="epochs", unit="epoch")


def _report(bar, record: dict) -> None:
    """The epoch on the progress bar, or one log line when the bar is off."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(
            loss=f"{record['train_loss']:.3f}",
            val_maF1=f"{record['val_tuned_macro_f1']:.3f}",
            samples_s=f"{record['samples_per_sec']:.0f}",
        )
        return
    logging.info(
        "epoch %d  loss %.4f  val macro-F1 (tuned) %.4f  %.0f samples/s",
        record["epoch"],
        record["train_loss"],
        record["val_tuned_macro_f1"],
        record["samples_per_sec"],
    )


def _write_results(run: _Run) -> dict:
    """Scores the best parameters on validation and test and writes results.json."""
    progress, splits, config = run.progress, run.splits, run.config
    best_epoch = max(progress.selection.best_epoch)
    val_probs = _predict(run, run.best_params, "val", best_epoch)
    test_probs = _predict(run, run.best_params, "test", best_epoch)
    scores = evaluation.results(
        val_probs,
        splits.val_y,
        test_probs,
        splits.test_y,
        train_labels=splits.train_y,
        threshold=float(config.threshold),
        best_epochs=progress.selection.best_epoch,
        first_seed=int(config.seed),
    )
    if progress.step_seconds > 0:
        steps_per_sec = progress.timed_steps / progress.step_seconds
    else:  # one epoch per process: every epoch included compiling
        steps_per_sec = progress.steps / max(progress.train_seconds, 1e-9)
    results = {
        "dataset": run.dataset.name,
        "config": workdir_lib.config_dict(config),
        "best_epoch": scores.pop("best_epoch"),
        "val": scores.pop("val"),
        "test": scores.pop("test"),
        "train_seconds": float(progress.train_seconds),
        "steps_per_sec": float(steps_per_sec),
        "compile_seconds": compilation.compile_seconds() - run.compile_seconds_at_start,
        "val_tuned_threshold": scores.pop("val_tuned_threshold"),
        "val_per_metric_thresholds": scores.pop("val_per_metric_thresholds"),
        "split": splits.description,
        "num_train": int(len(splits.train_x)),
        "num_val": int(len(splits.val_x)),
        "num_test": int(len(splits.test_x)),
        "constant_baseline": scores.pop("constant_baseline"),
    }
    if progress.skipped_steps:
        results["skipped_steps"] = int(progress.skipped_steps)
    results.update(scores)
    run.ckpt.wait()
    if processes.is_primary():
        _write_model(run, results)  # before results.json, which marks the run finished
        workdir_lib.write_json_atomic(run.results_path, results)
        logging.info("Results written to %s", run.results_path)
    return results


def _write_model(run: _Run, results: dict) -> None:
    """The self-contained model record, `WORKDIR/model/` (`cgmvae_jax.load(workdir)`)."""
    path = os.path.join(run.workdir, "model")
    description = model_file.describe(
        results,
        label_names=run.dataset.label_names,
        num_features=run.trainer.num_features,
        num_labels=run.trainer.num_labels,
        config=results["config"],
    )
    try:
        model_file.write(
            path,
            description,
            jax.device_get(run.best_params),
            run.splits.feature_mean,
            run.splits.feature_std,
        )
    except OSError as e:
        raise workdir_lib.output_error(path, e) from e


def load_best(workdir: str, config: ml_collections.ConfigDict | None = None):
    """Loads a finished or running workdir: (trainer, best params [S, ...], splits, dataset, info).

    Args:
      workdir: A training run directory.
      config: The run's config; read from `workdir/config.json` when None.
    """
    if config is None:
        config = config_lib.load_json_config(os.path.join(workdir, "config.json"))
    dataset, splits = data_lib.load_from_config(config)
    trainer = Trainer(config, splits.train_x.shape[1], splits.train_y.shape[1], len(splits.train_x))
    template = trainer.init_state().params
    with checkpoint_lib.Checkpointer(workdir, keep=int(config.keep_checkpoints)) as ckpt:
        params, info = ckpt.restore_best(template)
    return trainer, params, splits, dataset, info
