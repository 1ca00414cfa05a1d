"""What a study writes: the trial table (trials.csv, trials.md), a progress line per trial, and
the winner's config file `<name>_tuned.py` in the style of `configs/`.

Works on optuna's `FrozenTrial`s through their attributes (state names, params, values,
intermediate values, user attributes), so nothing here imports optuna.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import shlex
import textwrap

import ml_collections

from cgmvae_jax import config_lib
from cgmvae_jax import workdir as workdir_lib
from cgmvae_jax.tuning import space as space_lib

COLUMNS_BEFORE = ("number", "state")
COLUMNS_AFTER = ("objective", "best_epoch", "epochs", "seconds", "note")


def trial_dir(root: str, number: int) -> str:
    """The training run directory of trial `number` of the study in `root`."""
    return os.path.join(root, "trials", f"{number:04d}")


def is_finished(trial) -> bool:
    """Complete, pruned, or failed on its own (an "error"); interrupted trials are not."""
    state = trial.state.name
    return state in ("COMPLETE", "PRUNED") or (state == "FAIL" and "error" in trial.user_attrs)


def state_counts(trials) -> dict[str, int]:
    counts = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def best_trial(trials):
    """The complete trial with the highest objective (the first one on ties), or None."""
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    return max(complete, key=lambda t: (t.value, -t.number), default=None)


def _seconds(trial) -> float | None:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def _note(trial, resumed_by: dict[int, int]) -> str:
    notes = []
    if "resumes" in trial.user_attrs:
        notes.append(f"resumes trial {trial.user_attrs['resumes']}")
    state = trial.state.name
    if state == "PRUNED":
        notes.append(f"pruned after epoch {max(trial.intermediate_values)}")
    elif state == "FAIL" and "error" in trial.user_attrs:
        notes.append("error: " + trial.user_attrs["error"].splitlines()[0][:160])
    elif state == "FAIL":
        later = resumed_by.get(trial.number)
        notes.append(
            f"interrupted; resumed by trial {later}" if later is not None else "interrupted"
        )
    elif state in ("RUNNING", "WAITING"):
        notes.append(state.lower())
    return "; ".join(notes)


def trial_rows(trials, names: list[str]) -> list[dict]:
    """One row per trial: number, state, the parameters `names`, objective, best epoch,
    epochs trained (as reported), seconds (this trial's wall time) and a note."""
    resumed_by = {t.user_attrs["resumes"]: t.number for t in trials if "resumes" in t.user_attrs}
    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name}
        row.update({n: t.params.get(n, "") for n in names})
        steps = t.intermediate_values
        row.update(
            objective=t.value if t.state.name == "COMPLETE" else "",
            best_epoch=t.user_attrs.get("best_epoch", ""),
            epochs=max(steps) + 1 if steps else "",
            seconds=round(_seconds(t), 1) if _seconds(t) is not None else "",
            note=_note(t, resumed_by),
        )
        rows.append(row)
    return rows


def _cell(value) -> str:
    """A value for the markdown table (short floats)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _literal(value) -> str:
    """Python source of a config value, as `ruff format` writes it."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (tuple, list)):
        items = ", ".join(_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    return repr(value)


_MAX_LINE = 100  # pyproject.toml's ruff line-length


def _wrap_command(command: str, width: int = 92) -> list[str]:
    """The command split over lines ending in a backslash (as the configs' docstrings)."""
    lines, line = [], ""
    for token in shlex.split(command):
        word = shlex.quote(token)
        if line and len(line) + 1 + len(word) > width:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return ["  " + line_ for line_ in [*lines, line]]


def _has_table7_row(dataset: str) -> bool:
    return dataset in config_lib.TABLE7 or dataset in config_lib.TABLE7_BORROWED


def reference_config(dataset: str) -> ml_collections.ConfigDict:
    """What a tuned config file builds on: the data set's Table 7 config, else base_config()."""
    if _has_table7_row(dataset):
        return config_lib.dataset_config(dataset)
    return config_lib.base_config()


def config_overrides(config: ml_collections.ConfigDict, first: list[str]) -> dict:
    """The fields of `config` that differ from its reference config, `first` ones first.

    Runtime fields (data_dir, progress, ...) are left out: they belong to the machine.
    """
    reference = workdir_lib.config_dict(reference_config(str(config.dataset)))
    values = workdir_lib.config_dict(config)
    order = [*first, *sorted(k for k in values if k not in first)]
    return {
        k: config[k]
        for k in order
        if k not in space_lib.RUNTIME_FIELDS and values[k] != reference.get(k, object())
    }


class Outputs:
    """The files of a study directory, rewritten after every trial."""

    def __init__(self, workdir, name, base, space, objective, command, write_config):
        self.workdir = workdir
        self.name = name
        self.base = base
        self.space = space
        self.objective = objective
        self.command = command
        self.write_config = write_config
        self.config_path = os.path.join(workdir, f"{name}_tuned.py")

    def write(self, study) -> dict[str, str]:
        """Writes trials.csv, trials.md and (once a trial is complete) the tuned config."""
        trials = study.get_trials(deepcopy=False)
        rows = trial_rows(trials, list(self.space))
        files = {
            "csv": os.path.join(self.workdir, "trials.csv"),
            "markdown": os.path.join(self.workdir, "trials.md"),
        }
        workdir_lib.write_text_atomic(files["csv"], self._csv(rows))
        workdir_lib.write_text_atomic(files["markdown"], self._markdown(trials, rows))
        best = best_trial(trials)
        if best is None:
            return files
        text = self.config_text(trials, best)
        files["config"] = self.config_path
        workdir_lib.write_text_atomic(self.config_path, text)
        if self.write_config:
            os.makedirs(os.path.dirname(os.path.abspath(self.write_config)), exist_ok=True)
            workdir_lib.write_text_atomic(self.write_config, text)
            files["copy"] = self.write_config
        return files

    def _csv(self, rows: list[dict]) -> str:
        out = io.StringIO()
        fields = [*COLUMNS_BEFORE, *self.space, *COLUMNS_AFTER]
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def _summary(self, trials) -> str:
        counts = state_counts(trials)
        total = sum(s for s in map(_seconds, trials) if s is not None)
        parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
        finished = sum(map(is_finished, trials))
        plural = "" if finished == 1 else "s"
        return f"{finished} finished trial{plural} ({parts}), {_duration(total)} of trial time"

    def _markdown(self, trials, rows: list[dict]) -> str:
        best = best_trial(trials)
        fields = [*COLUMNS_BEFORE, *self.space, *COLUMNS_AFTER]
        lines = [
            f"# Tuning study `{self.name}`",
            "",
            f"- Command: `{self.command or '(run_study from Python)'}`",
            f"- Objective (maximised): {self.objective}",
            "- Space: " + "; ".join(f"`{k}` {p.describe()}" for k, p in self.space.items()),
            f"- Trials: {self._summary(trials)}",
        ]
        if best is not None:
            lines.append(
                f"- Best: trial {best.number}, {best.value:.4f}; config "
                f"`{os.path.basename(self.config_path)}`"
            )
        lines += ["", "| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
        for row in rows:
            cells = [_cell(row[f]) for f in fields]
            if best is not None and row["number"] == best.number:
                cells[0] = f"**{cells[0]}**"
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def config_text(self, trials, best) -> str:
        """The winner's config file: a docstring with the search command, the trials and the
        date, then `get_config()` with the fields that differ from the data set's config."""
        config = space_lib.trial_config(self.base, best.params)
        overrides = config_overrides(config, list(self.space))
        docstring = 'r"""' + self._docstring(trials, best, config)
        # A command token longer than a line (a long --space list) cannot be wrapped; the
        # file must still pass the repository's line-length check.
        too_long = any(len(line) > _MAX_LINE for line in docstring.splitlines())
        lines = [docstring, '"""  # noqa: E501' if too_long else '"""', ""]
        lines += ["from cgmvae_jax import config_lib", "", ""]
        lines += ["def get_config():", f'    """Returns the tuned {self.name} configuration."""']
        dataset = _literal(str(config.dataset))
        args = [f"        {k}={_literal(v)}," for k, v in overrides.items() if k != "dataset"]
        if not _has_table7_row(str(config.dataset)):
            lines += ["    config = config_lib.base_config()", "    config.update("]
            lines += [f"        dataset={dataset},", *args, "    )", "    return config"]
        elif args:
            lines += [
                "    return config_lib.dataset_config(",
                f"        {dataset},",
                *args,
                "    )",
            ]
        else:
            lines.append(f"    return config_lib.dataset_config({dataset})")
        return "\n".join(lines) + "\n"

    def _docstring(self, trials, best, config) -> str:
        prose = (
            f"Winner: trial {best.number} of study {self.name!r}, {self.objective} = "
            f"{best.value:.4f} (best epoch {best.user_attrs.get('best_epoch')} of "
            f"{config.num_epochs}). Searched: {', '.join(self.space)}; every other field as in "
            "the search's base config."
        )
        train_path = self.write_config or self.config_path
        train_command = (
            f"python launch/train.py --config={train_path} --workdir=runs/{self.name}_tuned"
        )
        lines = [
            f"{self.name} with hyper-parameters tuned on validation (launch/tune.py).",
            "",
            f"Search, {datetime.date.today().isoformat()}: {self._summary(trials)}.",
            "",
            *(_wrap_command(self.command) if self.command else ["  (run_study from Python)"]),
            "",
            *textwrap.wrap(prose, width=96),
            "",
            *_wrap_command(train_command),
        ]
        return "\n".join(lines)

    def progress_line(self, study, number: int) -> str:
        """One line on a trial just ended: its state, score, parameters and the best so far."""
        trials = study.get_trials(deepcopy=False)
        trial = trials[number]
        seconds = _seconds(trial) or 0.0
        params = " ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
        if trial.state.name == "COMPLETE":
            score = f"{trial.value:.4f} (best epoch {trial.user_attrs.get('best_epoch')})"
        else:
            score = _note(trial, {}) or trial.state.name.lower()
        best = best_trial(trials)
        best_text = "none yet" if best is None else f"trial {best.number}, {best.value:.4f}"
        return (
            f"Trial {number} {trial.state.name} in {_duration(seconds)}: {score} | {params} | "
            f"best so far: {best_text} | {sum(map(is_finished, trials))} finished"
        )

    def best_summary(self, study) -> dict | None:
        best = best_trial(study.get_trials(deepcopy=False))
        if best is None:
            return None
        return {
            "number": best.number,
            "value": float(best.value),
            "params": dict(best.params),
            "best_epoch": best.user_attrs.get("best_epoch"),
            "workdir": trial_dir(self.workdir, best.number),
        }
