"""Tests of cgmvae_jax.tuning and launch/tune.py.

The study loop runs fast with a stand-in trainer (`_FakeTrainer`, no JAX); one real study on the
smoke config is killed mid-trial and resumed, and the command line continues it.
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from unittest import mock

import optuna
from absl.testing import absltest

from cgmvae_jax import checkpoint, config_lib, metrics, train, tuning
from cgmvae_jax.tuning import report
from cgmvae_jax.tuning import space as space_lib
from tests import helpers

optuna.logging.set_verbosity(optuna.logging.WARNING)

_SPACE = ["learning_rate", "dropout_rate", "batch_size"]


class _Poison:
    """Stands for the test metrics in a trainer's results: any use of it fails the test."""

    def _fail(self, *args, **kwargs):
        raise AssertionError("the tuner read a test metric")

    __getitem__ = __iter__ = __len__ = __contains__ = get = keys = items = values = _fail


def _garble_test_metrics(workdir: str) -> None:
    """Rewrites results.json with nonsense test numbers (only validation may matter)."""
    path = os.path.join(workdir, "results.json")
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    results["test"] = {p: {m: -1e9 for m in metrics.METRIC_NAMES} for p in metrics.PROTOCOLS}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f)


def _read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _load_config_file(path: str):
    spec = importlib.util.spec_from_file_location("tuned_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _storage(workdir: str) -> str:
    return f"sqlite:///{os.path.join(workdir, 'optuna.db')}"


def _load_trials(workdir: str, name: str = "smoke"):
    return optuna.load_study(study_name=name, storage=_storage(workdir)).get_trials()


class _FakeTrainer:
    """Stands in for `train.train_and_evaluate`: one metrics.jsonl line per epoch (resuming after
    the lines already there), a results.json, every validation metric = 100 * learning_rate.

    `fail(trial_dir_name, epoch)` may return an exception to raise once the epoch is logged.
    """

    def __init__(self, fail=None, seconds_per_epoch=0.0):
        self.fail = fail
        self.seconds_per_epoch = seconds_per_epoch
        self.calls = []  # (trial directory name, epochs trained)

    def __call__(self, config, workdir, *, on_epoch=None):
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        done = len(_read_jsonl(path)) if os.path.exists(path) else 0
        name, epochs, num_epochs = os.path.basename(workdir), [], int(config.num_epochs)
        self.calls.append((name, epochs))
        score = 100 * float(config.learning_rate)
        for epoch in range(done, num_epochs):
            time.sleep(self.seconds_per_epoch)
            record = {"epoch": epoch, "val_selection": score * (epoch + 1) / num_epochs}
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            epochs.append(epoch)
            error = self.fail and self.fail(name, epoch)
            if error:
                raise error
            on_epoch(record)
        val = {p: {m: score for m in metrics.METRIC_NAMES} for p in metrics.PROTOCOLS}
        results = {"best_epoch": num_epochs - 1, "val": val}
        with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f)
        return {**results, "test": _Poison()}


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


class SpaceTest(absltest.TestCase):
    def test_default_space_is_appendix_b1_plus_batch_size_and_epochs(self):
        chosen = space_lib.select()
        self.assertEqual(
            list(chosen),
            [
                "learning_rate",
                "contrastive_weight",
                "bce_weight",
                "embedding_dim",
                "dropout_rate",
                "batch_size",
                "num_epochs",
            ],
        )
        self.assertEqual((chosen["learning_rate"].low, chosen["learning_rate"].high), (1e-4, 4e-3))
        self.assertEqual(chosen["contrastive_weight"].choices, (0.1, 0.5, 1.0, 1.5, 2.0))
        self.assertEqual(chosen["bce_weight"].choices, (0.1, 0.5, 1.0, 1.5, 2.0))
        self.assertEqual(chosen["embedding_dim"].choices, (512, 1024, 2048, 3072))
        self.assertEqual(chosen["dropout_rate"].choices, (0.3, 0.5, 0.7))
        self.assertEqual(
            list(space_lib.select(["weight_decay", "dropout_rate"])),
            ["dropout_rate", "weight_decay"],
        )
        for field in space_lib.SPACE:
            self.assertIn(field, config_lib.base_config())

    def test_unknown_parameter_names_the_searchable_ones(self):
        with self.assertRaisesRegex(ValueError, r"unknown parameter\(s\) bogus; .*learning_rate"):
            space_lib.select(["learning_rate", "bogus"])

    def test_batch_sizes_leave_four_batches_per_epoch(self):
        sizes = lambda n: space_lib.fit_to_data(space_lib.select(), n)["batch_size"].choices
        self.assertEqual(sizes(2000), (32, 64, 128, 256))
        self.assertEqual(sizes(1000), (32, 64, 128))
        self.assertEqual(sizes(240), (32,))
        self.assertEqual(sizes(100), (25,))

    def test_trial_config_lowers_eta_min_below_a_small_learning_rate(self):
        base = helpers.smoke_config()
        low = space_lib.trial_config(base, {"learning_rate": 1e-4, "dropout_rate": 0.7})
        self.assertEqual((low.learning_rate, low.eta_min, low.dropout_rate), (1e-4, 1e-4, 0.7))
        high = space_lib.trial_config(base, {"learning_rate": 1e-3})
        self.assertEqual(high.eta_min, base.eta_min)
        self.assertEqual(base.learning_rate, 2e-3)  # the base is not changed

    def test_objective_reads_validation_only(self):
        val = {p: {m: 0.0 for m in metrics.METRIC_NAMES} for p in metrics.PROTOCOLS}
        val["val_per_metric"].update(macro_f1=0.4, example_f1=0.6)
        val["fixed"]["hamming_accuracy"] = 0.9
        results = {"val": val, "test": _Poison()}
        self.assertAlmostEqual(tuning.Objective()(results), 0.5)
        self.assertAlmostEqual(tuning.Objective("fixed", ("hamming_accuracy",))(results), 0.9)
        with self.assertRaisesRegex(ValueError, "--metrics=f1: name one or more of"):
            tuning.Objective(metrics=("f1",))
        with self.assertRaisesRegex(ValueError, "--protocol=test: must be one of"):
            tuning.Objective(protocol="test")

    def test_missing_optuna_says_how_to_install_it(self):
        with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(sys.modules, {"optuna": None}):
            with self.assertRaisesRegex(ImportError, r'pip install -e "\.\[tune\]"'):
                tuning.run_study(helpers.smoke_config(), os.path.join(tmp, "study"), trials=1)
            self.assertEqual(os.listdir(tmp), [])  # nothing written


class ConfigFileTest(absltest.TestCase):
    def _outputs(self, base, space_names, workdir="/tmp/study", command=None):
        chosen = space_lib.select(space_names)
        # Twice as long as a line: the docstring must wrap it.
        command = command or (
            "python launch/tune.py --config=configs/yeast.py --workdir=runs/tune/yeast " * 2
        )
        return report.Outputs(
            workdir, "yeast", base, chosen, tuning.Objective(), command, "configs/yeast_tuned.py"
        )

    def _best(self, params):
        distributions = {
            k: optuna.distributions.CategoricalDistribution(space_lib.SPACE[k].choices)
            if space_lib.SPACE[k].choices
            else optuna.distributions.FloatDistribution(1e-4, 4e-3, log=True)
            for k in params
        }
        return optuna.trial.create_trial(
            value=0.61, params=params, distributions=distributions, user_attrs={"best_epoch": 7}
        )

    def _assert_ruff_clean(self, path):
        if shutil.which("ruff"):  # the file is ready to commit in configs/
            for args in (["format", "--diff"], ["check"]):
                proc = subprocess.run(
                    ["ruff", *args, "--config", os.path.join(helpers.REPO, "pyproject.toml"), path],
                    capture_output=True,
                    text=True,
                )
                self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)

    def test_unbreakable_long_token_keeps_the_file_lint_clean(self):
        space = list(space_lib.SPACE)  # all eight, weight_decay included
        command = "python launch/tune.py --config=configs/yeast.py --space=" + ",".join(space)
        base = config_lib.dataset_config("yeast")
        params = {"learning_rate": 1e-3, "weight_decay": 1e-4}
        outputs = self._outputs(base, space, command=command)
        best = self._best(params)
        text = outputs.config_text([best], best)
        self.assertIn("--space=" + ",".join(space), text)  # unbroken: the shell needs it whole
        self.assertIn('"""  # noqa: E501', text)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "yeast_tuned.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            self.assertEqual(_load_config_file(path).weight_decay, 1e-4)
            self._assert_ruff_clean(path)

    def test_table7_data_set_gets_dataset_config_with_the_differing_fields(self):
        base = config_lib.dataset_config("yeast", num_epochs=150, data_dir="/somewhere/else")
        params = {"learning_rate": 1.234e-4, "embedding_dim": 512, "dropout_rate": 0.7}
        outputs = self._outputs(base, list(params))
        best = self._best(params)
        text = outputs.config_text([best], best)
        self.assertIn('return config_lib.dataset_config(\n        "yeast",\n', text)
        self.assertNotIn("embedding_dim=", text)  # Table 7's value already
        self.assertNotIn("data_dir", text)  # a runtime field
        self.assertIn("python launch/tune.py --config=configs/yeast.py", text)
        self.assertIn("1 finished trial (1 complete)", text)
        self.assertIn("--config=configs/yeast_tuned.py", text)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "yeast_tuned.py")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            config = _load_config_file(path)
            self._assert_ruff_clean(path)
        expected = space_lib.trial_config(base, params)
        self.assertEqual(config.learning_rate, 1.234e-4)
        self.assertEqual(config.eta_min, 1.234e-4)  # lowered with the learning rate
        self.assertEqual((config.dropout_rate, config.num_epochs), (0.7, 150))
        for field in expected:
            if field not in space_lib.RUNTIME_FIELDS:
                self.assertEqual(config[field], expected[field], field)


class StudyLoopTest(absltest.TestCase):
    """The study loop with `_FakeTrainer` (seconds in all)."""

    def setUp(self):
        super().setUp()
        self.workdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.workdir)
        self.base = helpers.smoke_config(num_epochs=3)

    def _run(self, fake, **kwargs):
        kwargs = {"trials": 3, "space": _SPACE, "study_name": "smoke", **kwargs}
        with mock.patch.object(train, "train_and_evaluate", fake):
            return tuning.run_study(self.base, self.workdir, **kwargs)

    def test_signal_interrupts_a_trial_that_resumes_in_the_next_run(self):
        stop = lambda name, epoch: name == "0001" and epoch == 0 and train.TrainingInterrupted()
        first = _FakeTrainer(fail=stop)
        with self.assertRaises(train.TrainingInterrupted):
            self._run(first)
        trials = _load_trials(self.workdir)
        self.assertEqual([t.state.name for t in trials], ["COMPLETE", "FAIL", "WAITING"])
        self.assertEqual(trials[2].user_attrs, {"resumes": 1})
        self.assertIn("1,FAIL,", _read(os.path.join(self.workdir, "trials.csv")))
        second = _FakeTrainer()
        summary = self._run(second)
        trials = _load_trials(self.workdir)
        self.assertEqual(second.calls[0], ("0002", [1, 2]))  # epoch 0 is not trained again
        self.assertEqual(trials[2].params, trials[1].params)
        self.assertEqual(sorted(trials[2].intermediate_values), [0, 1, 2])
        self.assertFalse(os.path.exists(report.trial_dir(self.workdir, 1)))
        self.assertEqual(summary["finished"], 3)
        self.assertEqual(len(trials), 4)  # 0, 1 (interrupted), 2 (its resumption), 3
        self.assertNotIn("0000", [name for name, _ in second.calls])
        self.assertIn("interrupted; resumed by trial 2", _read(self.workdir, "trials.md"))

    def test_timeout_stops_after_an_epoch_and_the_next_run_resumes(self):
        summary = self._run(_FakeTrainer(seconds_per_epoch=0.3), timeout=0.2)
        self.assertEqual(summary["stopped"], "timeout")
        self.assertEqual(summary["finished"], 0)
        trials = _load_trials(self.workdir)
        self.assertEqual([t.state.name for t in trials], ["FAIL", "WAITING"])
        trained = len(trials[0].intermediate_values)
        self.assertLess(trained, 3)
        again = _FakeTrainer()
        self.assertEqual(self._run(again, trials=1)["finished"], 1)
        self.assertEqual(again.calls, [("0001", list(range(trained, 3)))])

    def test_nonfinite_trial_is_a_finished_failure(self):
        nan = lambda name, epoch: name == "0000" and train.NonFiniteError("loss is NaN")
        summary = self._run(_FakeTrainer(fail=nan), trials=2)
        trials = _load_trials(self.workdir)
        self.assertEqual([t.state.name for t in trials], ["FAIL", "COMPLETE"])
        self.assertEqual(summary["finished"], 2)
        self.assertIn("error: loss is NaN", _read(self.workdir, "trials.csv"))

    def test_pruned_trials_are_recorded(self):
        fake = _FakeTrainer()
        summary = self._run(fake, trials=2, pruner=_AlwaysPrune())
        self.assertEqual(summary["counts"], {"PRUNED": 2})
        self.assertIsNone(summary["best"])
        self.assertNotIn("config", summary["files"])
        self.assertEqual([epochs for _, epochs in fake.calls], [[0], [0]])
        with open(os.path.join(self.workdir, "trials.csv"), encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([r["state"] for r in rows], ["PRUNED", "PRUNED"])
        self.assertEqual(
            [(r["objective"], r["epochs"], r["note"]) for r in rows],
            [("", "1", "pruned after epoch 0")] * 2,
        )

    def test_median_pruner_stops_a_poor_trial_after_warmup(self):
        study = optuna.create_study(
            storage=_storage(self.workdir), study_name="smoke", direction="maximize"
        )
        for lr in (3e-3, 2e-3, 2.5e-3, 1e-4):
            study.enqueue_trial({"learning_rate": lr, "dropout_rate": 0.5, "batch_size": 32})
        fake = _FakeTrainer()
        summary = self._run(fake, trials=4, prune_startup=3, prune_warmup=1)
        states = [t.state.name for t in _load_trials(self.workdir)]
        self.assertEqual(states, ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"])
        self.assertEqual(fake.calls[-1], ("0003", [0]))
        self.assertEqual(summary["best"]["number"], 0)
        self.assertEqual(summary["best"]["value"], 100 * 3e-3)

    def test_trials_counts_the_finished_trials_of_every_run(self):
        self._run(_FakeTrainer(), trials=2)
        again = _FakeTrainer()
        summary = self._run(again, trials=3)
        self.assertEqual([name for name, _ in again.calls], ["0002"])
        self.assertEqual(summary["finished"], 3)
        self.assertEqual(self._run(_FakeTrainer(), trials=3)["finished"], 3)  # nothing to do

    def test_a_study_is_continued_only_with_its_settings(self):
        self._run(_FakeTrainer(), trials=1)
        with self.assertRaisesRegex(ValueError, "other settings: space"):
            self._run(_FakeTrainer(), trials=2, space=["learning_rate"])
        with self.assertRaisesRegex(ValueError, r"--config.num_epochs=3 \(study\) != 4 \(now\)"):
            self.base.num_epochs = 4
            self._run(_FakeTrainer(), trials=2)
        with self.assertRaisesRegex(ValueError, "--trials=0: must be at least 1"):
            self._run(_FakeTrainer(), trials=0)


def _read(*parts: str) -> str:
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return f.read()


def _launch(*args: str) -> subprocess.CompletedProcess:
    """Runs launch/tune.py of this checkout (from the repository root)."""
    env = dict(os.environ, PYTHONPATH=helpers.REPO)
    return subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "launch", "tune.py"), *args],
        capture_output=True,
        text=True,
        cwd=helpers.REPO,
        env=env,
        timeout=300,
    )


class _Killed(BaseException):
    """The process dies: nothing of the tuner runs after it (like SIGKILL)."""


class RealStudyTest(absltest.TestCase):
    """A study of real smoke runs: trial 1 is killed after epoch 0, a second call resumes it,
    the command line then has nothing left to train."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp()
        cls.workdir = os.path.join(cls.tmp, "study")
        cls.base = helpers.smoke_config(num_epochs=2)
        cls.calls = []  # (call, trial directory name, epochs trained)
        real = train.train_and_evaluate

        def trainer(config, workdir, *, on_epoch):
            name, epochs = os.path.basename(workdir), []
            cls.calls.append((len(cls.runs), name, epochs))

            def hook(record):
                epochs.append(record["epoch"])
                on_epoch(record)
                if (len(cls.runs), name, record["epoch"]) == (0, "0001", 0):
                    raise _Killed()

            results = real(config, workdir, on_epoch=hook)
            _garble_test_metrics(workdir)
            return {**results, "test": _Poison()}

        cls.runs = []
        with mock.patch.object(train, "train_and_evaluate", trainer), checkpoint.quiet_orbax():
            try:
                tuning.run_study(cls.base, cls.workdir, trials=2, space=_SPACE, study_name="smoke")
            except _Killed:
                cls.runs.append("killed")
            cls.killed_states = [t.state.name for t in _load_trials(cls.workdir)]
            cls.runs.append(
                tuning.run_study(cls.base, cls.workdir, trials=2, space=_SPACE, study_name="smoke")
            )
        cls.trials = _load_trials(cls.workdir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)
        super().tearDownClass()

    def test_killed_trial_is_resumed_from_its_checkpoint(self):
        self.assertEqual(self.runs[0], "killed")
        self.assertEqual(self.killed_states, ["COMPLETE", "RUNNING"])
        self.assertEqual([t.state.name for t in self.trials], ["COMPLETE", "FAIL", "COMPLETE"])
        self.assertEqual(self.trials[2].params, self.trials[1].params)
        self.assertEqual(
            self.calls, [(0, "0000", [0, 1]), (0, "0001", [0]), (1, "0002", [1])]
        )  # trial 0 is not trained again, nor epoch 0 of trial 1
        self.assertEqual(sorted(self.trials[2].intermediate_values), [0, 1])
        lines = _read_jsonl(os.path.join(self.workdir, "trials", "0002", "metrics.jsonl"))
        self.assertEqual([r["epoch"] for r in lines], [0, 1])

    def test_trials_are_normal_workdirs_scored_on_validation(self):
        self.assertEqual(sorted(os.listdir(os.path.join(self.workdir, "trials"))), ["0000", "0002"])
        for t in (self.trials[0], self.trials[2]):
            workdir = report.trial_dir(self.workdir, t.number)
            with open(os.path.join(workdir, "results.json"), encoding="utf-8") as f:
                results = json.load(f)
            self.assertEqual(results["test"]["fixed"]["macro_f1"], -1e9)  # garbled
            val = results["val"]["val_per_metric"]
            self.assertAlmostEqual(t.value, (val["macro_f1"] + val["example_f1"]) / 2)
            self.assertEqual(t.user_attrs["best_epoch"], results["best_epoch"])
            self.assertEqual(results["config"]["dropout_rate"], t.params["dropout_rate"])
        _, params, *_ = train.load_best(report.trial_dir(self.workdir, 2))  # evaluate.py's way
        self.assertIsNotNone(params)

    def test_tables_and_config_file(self):
        best = max((t for t in self.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
        self.assertEqual(self.runs[1]["best"]["number"], best.number)
        rows = _read(self.workdir, "trials.csv").splitlines()
        self.assertEqual(
            rows[0],
            "number,state,learning_rate,dropout_rate,batch_size,"
            "objective,best_epoch,epochs,seconds,note",
        )
        self.assertEqual([r.split(",")[1] for r in rows[1:]], ["COMPLETE", "FAIL", "COMPLETE"])
        self.assertIn(f"| **{best.number}** | COMPLETE |", _read(self.workdir, "trials.md"))
        config = _load_config_file(os.path.join(self.workdir, "smoke_tuned.py"))
        for name, value in best.params.items():
            self.assertEqual(config[name], value, name)
        self.assertEqual(config.num_epochs, 2)
        self.assertEqual(config.embedding_dim, self.base.embedding_dim)

    def test_command_line_continues_the_finished_study(self):
        copy = os.path.join(self.tmp, "configs", "smoke_tuned.py")
        before = os.path.getmtime(os.path.join(self.workdir, "trials", "0002", "results.json"))
        proc = _launch(
            "--config=configs/smoke.py",
            "--config.num_epochs=2",
            f"--workdir={self.workdir}",
            "--trials=2",
            "--space=learning_rate,dropout_rate,batch_size",
            f"--write_config={copy}",
        )
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        self.assertIn("Study smoke: 2 finished trials (2 complete, 1 fail).", proc.stdout)
        best = self.runs[1]["best"]["number"]
        self.assertIn(f"Best: trial {best},", proc.stdout)
        self.assertEqual(_read(copy), _read(self.workdir, "smoke_tuned.py"))
        self.assertIn("--write_config=", _read(copy))  # the command in the docstring
        after = os.path.getmtime(os.path.join(self.workdir, "trials", "0002", "results.json"))
        self.assertEqual(before, after)  # nothing trained


class LaunchErrorTest(absltest.TestCase):
    def _error(self, *args):
        proc = _launch(*args)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        self.assertLen(errors, 1, proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        return errors[0]

    def test_bad_flags_give_one_error_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            workdir = os.path.join(tmp, "study")
            line = self._error("--config=configs/smoke.py", f"--workdir={workdir}", "--space=lr")
            self.assertIn("unknown parameter(s) lr; the searchable fields are learning_rate", line)
            line = self._error(
                "--config=configs/smoke.py", f"--workdir={workdir}", "--config.learnin_rate=1"
            )
            self.assertIn("Did you mean --config.learning_rate", line)
            self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
    absltest.main()
