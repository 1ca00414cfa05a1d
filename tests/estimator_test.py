"""CGMVAEClassifier in scikit-learn's model-selection tools, on a real shared data set."""

import os
import subprocess
import sys

import numpy as np
from absl.testing import absltest

import cgmvae_jax
from tests import helpers

# A short, small run: the point is the estimator protocol, not the scores.
FAST = dict(
    num_epochs=2,
    embedding_dim=64,
    latent_dim=16,
    feature_hidden=(64,),
    label_hidden=(64,),
    decoder_hidden=(64,),
    progress=False,
    tensorboard=False,
)


class ProtocolTest(absltest.TestCase):
    def test_params_round_trip_and_clone(self):
        from sklearn.base import clone

        clf = cgmvae_jax.CGMVAEClassifier(num_epochs=5, learning_rate=1e-3)
        self.assertEqual(clf.get_params(), {"learning_rate": 1e-3, "num_epochs": 5})
        self.assertIs(clf.set_params(num_epochs=7, dropout_rate=0.3), clf)
        self.assertEqual(clf.get_params()["num_epochs"], 7)
        copy = clone(clf)
        self.assertIsNot(copy, clf)
        self.assertEqual(copy.get_params(), clf.get_params())
        self.assertIn("dropout_rate=0.3", repr(copy))

    def test_unfitted_and_bad_fields(self):
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        clf = cgmvae_jax.CGMVAEClassifier(num_epoch=2)
        with self.assertRaises(NotFittedError):
            check_is_fitted(clf)
        with self.assertRaisesRegex(AttributeError, "not fitted yet"):
            clf.predict(np.zeros((2, 3)))
        with self.assertRaisesRegex(ValueError, "num_epoch.*did you mean 'num_epochs'"):
            clf.fit(np.zeros((40, 3)), np.eye(40, 2, dtype=np.uint8))

    def test_core_import_does_not_load_sklearn(self):
        code = (
            "import sys, cgmvae_jax; cgmvae_jax.CGMVAEClassifier(num_epochs=1); "
            "print('sklearn' in sys.modules)"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(run.stdout.strip(), "False", run.stderr[-1000:])


@absltest.skipIf(helpers.shared_data_dir() is None, helpers.NO_SHARED_DATA)
class ModelSelectionTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        x, y = helpers.shared_arrays("yeast")
        rows = np.random.default_rng(0).permutation(len(x))[:900]
        cls.x, cls.y = x[rows], y[rows]

    def test_cross_validate_with_a_macro_f1_scorer(self):
        from sklearn.metrics import f1_score, make_scorer
        from sklearn.model_selection import cross_validate

        clf = cgmvae_jax.CGMVAEClassifier(**FAST)
        scores = cross_validate(
            clf, self.x, self.y, cv=3, scoring=make_scorer(f1_score, average="macro")
        )
        self.assertLen(scores["test_score"], 3)
        self.assertTrue(np.all(np.isfinite(scores["test_score"])))
        # Better than predicting nothing (0) on every fold, and a valid F1.
        self.assertTrue(np.all((scores["test_score"] > 0.05) & (scores["test_score"] <= 1.0)))

    def test_grid_search_picks_a_point_and_refits(self):
        from sklearn.model_selection import GridSearchCV

        search = GridSearchCV(
            cgmvae_jax.CGMVAEClassifier(**FAST),
            {"learning_rate": [1e-3, 3e-3]},
            cv=2,
            scoring="f1_macro",
        )
        search.fit(self.x, self.y)
        self.assertIn(search.best_params_["learning_rate"], (1e-3, 3e-3))
        self.assertTrue(np.isfinite(search.best_score_))
        predicted = search.predict(self.x[:10])
        self.assertEqual(predicted.shape, (10, 14))
        self.assertTrue(set(np.unique(predicted)) <= {0, 1})
        probs = search.best_estimator_.predict_proba(self.x[:10])
        np.testing.assert_array_equal(predicted, probs >= search.best_estimator_.model_.threshold)


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    absltest.main()
