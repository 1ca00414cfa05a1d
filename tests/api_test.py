"""Tests of the Python API: fit, Model, save/load, and the command-line evaluate on a model."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import chex
import numpy as np
from absl.testing import absltest, parameterized

import cgmvae_jax
from cgmvae_jax import config_lib, data, model_file
from tests import helpers

# configs/smoke.py's model and schedule (not its data set): a fit takes seconds.
SMALL = {
    k: v
    for k, v in helpers.smoke_config().items()
    if v != config_lib.base_config()[k] and not k.startswith(("synthetic_", "data"))
}


def _arrays(n=300, features=16, labels=6, seed=1):
    ds = data.synthetic_dataset(n, features, labels, seed=seed)
    return ds.x, ds.y


def _run(args, cwd):
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


class FitTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="api_test_")
        cls.x, cls.y = _arrays()
        cls.model = cgmvae_jax.fit(cls.x, cls.y, workdir=os.path.join(cls.root, "fit"), **SMALL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_fit_equals_launch_train_on_the_same_arrays_as_npz(self):
        path = os.path.join(self.root, "mine.npz")
        np.savez(path, X=self.x, Y=self.y)
        workdir = os.path.join(self.root, "cli")
        overrides = [f"--config.{k}={v}" for k, v in SMALL.items() if not isinstance(v, tuple)]
        run = _run(
            [
                os.path.join(helpers.REPO, "launch", "train.py"),
                "--config=" + os.path.join(helpers.REPO, "configs", "smoke.py"),
                f"--config.dataset={path}",
                f"--workdir={workdir}",
                *overrides,
            ],
            cwd=self.root,
        )
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        with open(os.path.join(workdir, "results.json")) as f:
            cli = json.load(f)
        self.assertEqual(cli["test"], self.model.results["test"])
        self.assertEqual(cli["best_epoch"], self.model.results["best_epoch"])
        from_cli = cgmvae_jax.load(workdir)
        chex.assert_trees_all_equal(from_cli.params, self.model.params)
        np.testing.assert_array_equal(
            from_cli.predict_proba(self.x), self.model.predict_proba(self.x)
        )

    def test_model_attributes_and_predictions(self):
        m = self.model
        self.assertEqual((m.num_features, m.num_labels), (16, 6))
        self.assertLen(m.label_names, 6)
        self.assertEqual(m.threshold, m.results["val_tuned_threshold"])
        probs = m.predict_proba(self.x[:7])
        chex.assert_shape(probs, (7, 6))
        self.assertTrue(np.all((probs >= 0) & (probs <= 1)))
        np.testing.assert_array_equal(m.predict(self.x[:7]), probs >= m.threshold)
        np.testing.assert_array_equal(m.predict(self.x[:7], threshold=0.9), probs >= 0.9)
        self.assertEqual(m.config.num_epochs, 3)

    def test_scipy_sparse_input_equals_dense(self):
        import scipy.sparse

        sparse = scipy.sparse.csr_matrix(np.where(self.x > 0.5, self.x, 0.0))
        np.testing.assert_array_equal(
            self.model.predict_proba(sparse), self.model.predict_proba(sparse.toarray())
        )

    def test_saved_model_travels_without_data_or_working_directory(self):
        work = os.path.join(self.root, "travel")
        os.makedirs(work)
        path = os.path.join(work, "mine.npz")
        np.savez(path, X=self.x, Y=self.y)
        workdir = os.path.join(work, "run")
        config = helpers.smoke_config(dataset=path, **SMALL)
        cgmvae_jax.train.train_and_evaluate(config, workdir)
        before = cgmvae_jax.load(workdir).predict_proba(self.x)
        moved = os.path.join(self.root, "moved_run")
        shutil.move(workdir, moved)
        os.remove(path)  # the training data are gone
        elsewhere = tempfile.mkdtemp(dir=self.root)
        cwd = os.getcwd()
        try:
            os.chdir(elsewhere)
            after = cgmvae_jax.load(moved).predict_proba(self.x)
            saved = cgmvae_jax.load(moved).save("copy")
            again = cgmvae_jax.load(os.path.abspath("copy")).predict_proba(self.x)
        finally:
            os.chdir(cwd)
        np.testing.assert_array_equal(after, before)
        np.testing.assert_array_equal(again, before)
        self.assertTrue(os.path.isfile(os.path.join(saved, "model.json")))

    def test_evaluate_cli_predicts_new_rows_from_the_model_alone(self):
        features = os.path.join(self.root, "new.csv")
        np.savetxt(features, self.x[:5], delimiter=",")
        out = os.path.join(self.root, "pred.csv")
        run = _run(
            [
                os.path.join(helpers.REPO, "launch", "evaluate.py"),
                f"--workdir={os.path.join(self.root, 'fit')}",
                f"--features={features}",
                f"--output={out}",
                "--top_k=2",
            ],
            cwd=tempfile.mkdtemp(dir=self.root),
        )
        self.assertEqual(run.returncode, 0, run.stderr[-2000:])
        with open(out) as f:
            rows = f.read().splitlines()
        self.assertLen(rows, 6)
        self.assertTrue(rows[0].startswith("row,predicted_labels,top_2,p_"))
        first = np.array([float(v) for v in rows[1].split(",")[3:]])
        np.testing.assert_allclose(first, self.model.predict_proba(self.x[:1])[0], atol=1e-6)


class ErrorTest(parameterized.TestCase):
    @parameterized.named_parameters(
        (
            "nan_feature",
            "x",
            lambda x, y: (np.where(np.eye(*x.shape) > 0, np.nan, x), y),
            r"^x: a missing value or NaN at row 0, feature column 0",
        ),
        (
            "label_two",
            "y",
            lambda x, y: (x, np.where(np.eye(*y.shape) > 0, 2, y)),
            r"^y: label value 2 at row 0, label column 0",
        ),
        ("row_mismatch", "rows", lambda x, y: (x, y[:-1]), r"x has 300 rows but y has 299"),
        ("one_dimensional", "shape", lambda x, y: (x[:, 0], y), r"x must be a 2-D"),
    )
    def test_bad_arrays_name_the_argument_row_and_column(self, _, corrupt, pattern):
        x, y = corrupt(*_arrays())
        with self.assertRaisesRegex(ValueError, pattern):
            cgmvae_jax.fit(x, y, **SMALL)

    def test_validation_rows_must_come_in_pairs_and_match(self):
        x, y = _arrays()
        with self.assertRaisesRegex(ValueError, "both x_val and y_val"):
            cgmvae_jax.fit(x, y, x_val=x[:10], **SMALL)
        with self.assertRaisesRegex(ValueError, "x_val, y_val have 15 features"):
            cgmvae_jax.fit(x, y, x_val=x[:10, :15], y_val=y[:10], **SMALL)

    def test_unknown_field_gets_a_suggestion(self):
        x, y = _arrays()
        with self.assertRaisesRegex(ValueError, r"unknown config field 'num_epoch'.*'num_epochs'"):
            cgmvae_jax.fit(x, y, num_epoch=3)

    def test_a_failed_start_leaves_no_workdir(self):
        root = tempfile.mkdtemp(prefix="api_test_")
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        workdir = os.path.join(root, "never")
        config = helpers.smoke_config(dataset="no_such_data_set", data_dir=root)
        with self.assertRaises(FileNotFoundError):
            cgmvae_jax.train.train_and_evaluate(config, workdir)
        self.assertFalse(os.path.exists(workdir))
        config = helpers.smoke_config(batch_size=10_000)  # fails after the data are loaded
        with self.assertRaisesRegex(ValueError, "batch_size"):
            cgmvae_jax.train.train_and_evaluate(config, workdir)
        self.assertFalse(os.path.exists(workdir))


class ModelFileTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="api_test_")
        cls.x, cls.y = _arrays()
        cls.path = cgmvae_jax.fit(cls.x, cls.y, **SMALL).save(os.path.join(cls.root, "model"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def _copy(self):
        path = tempfile.mkdtemp(dir=self.root)
        shutil.copytree(self.path, path, dirs_exist_ok=True)
        return path

    def test_wrong_number_of_features_is_refused(self):
        model = cgmvae_jax.load(self.path)
        with self.assertRaisesRegex(ValueError, r"trained on 16 features, so x must be \[n, 16\]"):
            model.predict_proba(self.x[:, :10])
        bad = self.x[:4].copy()
        bad[2, 5] = np.inf
        with self.assertRaisesRegex(ValueError, r"x: value inf at row 2, feature column 5"):
            model.predict_proba(bad)

    @parameterized.named_parameters(
        ("truncated_arrays", "arrays.npz", lambda b: b[: len(b) // 2], "truncated or garbled"),
        ("garbled_arrays", "arrays.npz", lambda b: b[:100] + b"\0" * 50 + b[150:], "checksum"),
        ("garbled_json", "model.json", lambda b: b[:40], "cannot be read as a model"),
        ("other_json", "model.json", lambda b: b'{"format": "pickle"}', "not a cgmvae_jax model"),
    )
    def test_damaged_record_is_one_clear_error(self, name, damage, pattern):
        path = self._copy()
        with open(os.path.join(path, name), "rb") as f:
            content = f.read()
        with open(os.path.join(path, name), "wb") as f:
            f.write(damage(content))
        with self.assertRaisesRegex(model_file.ModelFileError, pattern):
            cgmvae_jax.load(path)

    def test_missing_paths_and_unfinished_workdirs(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            cgmvae_jax.load(os.path.join(self.root, "nope"))
        unfinished = tempfile.mkdtemp(dir=self.root)
        with open(os.path.join(unfinished, "config.json"), "w") as f:
            f.write("{}")
        with self.assertRaisesRegex(model_file.ModelFileError, "without a finished model"):
            cgmvae_jax.load(unfinished)

    def test_the_record_holds_no_pickles(self):
        with np.load(os.path.join(self.path, "arrays.npz"), allow_pickle=False) as arrays:
            self.assertTrue(all(arrays[k].dtype != object for k in arrays.files))
            self.assertIn("feature_mean", arrays.files)

    def test_evaluate_cli_errors_are_one_line(self):
        missing = _run(
            [os.path.join(helpers.REPO, "launch", "evaluate.py"), "--workdir=/no/such/run"],
            cwd=self.root,
        )
        self.assertEqual(missing.returncode, 1)
        self.assertEqual(
            missing.stderr.strip().splitlines()[-1], "error: /no/such/run does not exist."
        )
        bad = os.path.join(self.root, "bad.csv")
        with open(bad, "w") as f:
            f.write("1,2\n3,x\n")
        run = _run(
            [
                os.path.join(helpers.REPO, "launch", "evaluate.py"),
                f"--workdir={self.path}",
                f"--features={bad}",
            ],
            cwd=self.root,
        )
        self.assertEqual(run.returncode, 1)
        self.assertIn(f"error: {bad}: line 2, column 2: 'x' is not a number.", run.stderr)
        self.assertNotIn("Traceback", run.stderr)


if __name__ == "__main__":
    absltest.main()
