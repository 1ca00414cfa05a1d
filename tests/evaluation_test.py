"""Tests of evaluation: per-epoch validation, the best-epoch choice and the results record."""

import dataclasses

import chex
import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import evaluation, metrics
from tests import helpers


def _score(*macro_f1, threshold=0.5):
    n = len(macro_f1)
    return evaluation.EpochScore(list(macro_f1), [threshold] * n, [{}] * n, list(macro_f1))


def _data(seeds=2, n=40, labels=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(np.uint8)
    probs = np.clip(y + rng.normal(0, 0.4, (seeds, n, labels)), 0, 1).astype(np.float32)
    return probs, y


class SelectionTest(parameterized.TestCase):
    def test_strictly_higher_scores_replace_the_best_per_seed(self):
        selection = evaluation.Selection.start(2, 0.5)
        chex.assert_trees_all_equal(selection.update(0, _score(0.3, 0.2)), np.array([1, 1], bool))
        chex.assert_trees_all_equal(selection.update(1, _score(0.3, 0.4)), np.array([0, 1], bool))
        self.assertEqual(selection.best_epoch, [0, 1])
        self.assertEqual(selection.best_score, [0.3, 0.4])

    def test_a_window_scores_the_mean_of_recent_epochs(self):
        selection = evaluation.Selection.start(1, 0.5, window=3)
        for epoch, value in enumerate([0.1, 0.9, 0.1, 0.5, 0.5, 0.6]):
            selection.update(epoch, _score(value))
        # Means: .1, .5, .367, .5, .367, .533 -> the last epoch, not the lucky spike at 1.
        self.assertEqual(selection.best_epoch, [5])
        self.assertAlmostEqual(selection.best_score[0], (0.5 + 0.5 + 0.6) / 3)

    def test_json_round_trip_and_older_checkpoints(self):
        selection = evaluation.Selection.start(2, 0.5, window=2)
        selection.update(0, _score(0.3, 0.2))
        again = evaluation.Selection.from_json(dataclasses.asdict(selection))
        self.assertEqual(again, selection)
        old = {"best_epoch": [3], "best_score": [0.4], "best_threshold": [0.3]}
        self.assertEqual(evaluation.Selection.from_json(old).window, 1)


class ValidateTest(absltest.TestCase):
    def test_validate_tunes_per_seed_and_logs_the_means(self):
        probs, y = _data()
        score = evaluation.validate(probs, y, threshold=0.5)
        for s in range(2):
            tuned = metrics.tune_threshold(probs[s], y)
            self.assertEqual(score.thresholds[s], tuned)
            self.assertEqual(
                score.macro_f1[s], metrics.multilabel_metrics(probs[s], y, tuned)["macro_f1"]
            )
        fields = score.log_fields()
        self.assertAlmostEqual(fields["val_tuned_macro_f1"], np.mean(score.macro_f1))
        self.assertLen(fields["val_tuned_macro_f1_per_seed"], 2)
        metric_fields = {k[4:] for k in fields if k.startswith("val_") and "tuned" not in k}
        self.assertEqual(metric_fields - {"selection"}, set(helpers.METRIC_KEYS))
        self.assertAlmostEqual(fields["val_selection"], np.mean(score.selection))

    def test_selection_by_several_metrics_is_the_mean_of_their_best_values(self):
        probs, y = _data()
        default = evaluation.validate(probs, y, threshold=0.5)
        self.assertEqual(default.selection, default.macro_f1)
        both = evaluation.validate(probs, y, 0.5, ("macro_f1", "example_f1"))
        for s in range(2):
            best = {
                m: max(
                    metrics.multilabel_metrics(probs[s], y, t)[m] for t in metrics.THRESHOLD_GRID
                )
                for m in ("macro_f1", "example_f1")
            }
            self.assertAlmostEqual(both.selection[s], np.mean(list(best.values())))

    def test_nonfinite_predictions_name_the_row(self):
        probs, _ = _data()
        probs[1, 7, 2] = np.nan
        with self.assertRaisesRegex(evaluation.NonFiniteError, r"seed 4\): 1 row\(s\).*row 7"):
            evaluation.check_finite_predictions(probs, "test", 3, first_seed=3)


class ResultsTest(parameterized.TestCase):
    @parameterized.parameters(1, 3)
    def test_results_record(self, seeds):
        val, y_val = _data(seeds, seed=1)
        test, y_test = _data(seeds, seed=2)
        out = evaluation.results(
            val, y_val, test, y_test, train_labels=y_val, threshold=0.5,
            best_epochs=list(range(seeds)), first_seed=5,
        )  # fmt: skip
        self.assertEqual(set(out["test"]), set(metrics.PROTOCOLS))
        self.assertEqual(out["best_epochs"], list(range(seeds)))
        self.assertLen(out["thresholds_per_seed"], seeds)
        first = metrics.evaluate_protocols(val[0], y_val, test[0], y_test)
        self.assertEqual(out["val_tuned_threshold"], first["val_tuned_threshold"])
        if seeds == 1:
            self.assertEqual(out["test"], first["test"])
            self.assertNotIn("ensemble", out)
            return
        self.assertEqual(out["seeds"], [5, 6, 7])
        macro = [p["test"]["fixed"]["macro_f1"] for p in out["per_seed"]]
        self.assertAlmostEqual(out["test"]["fixed"]["macro_f1"], np.mean(macro))
        self.assertAlmostEqual(out["test_std"]["fixed"]["macro_f1"], np.std(macro))
        ensemble = metrics.evaluate_protocols(val.mean(0), y_val, test.mean(0), y_test)
        self.assertEqual(out["ensemble"]["test"], ensemble["test"])
        self.assertEqual(out["ensemble"]["val_tuned"], ensemble["val_tuned_threshold"])


if __name__ == "__main__":
    absltest.main()
