"""Tests for cgmvae_jax.metrics: metric values, edge cases, threshold protocols, validation.

References are scikit-learn (micro/macro F1, Hamming loss, subset accuracy, ROC AUC) and
loop-form float64 NumPy code (example F1, precision at k).
"""

from unittest import mock

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from sklearn import metrics as skm

from cgmvae_jax import metrics

_THRESHOLD_METRICS = (
    "hamming_accuracy",
    "example_f1",
    "micro_f1",
    "macro_f1",
    "subset_accuracy",
)


def _random_case(seed, num_rows=60, num_labels=9, density=0.2, dtype=np.float64):
    """Random probabilities [N, L] loosely correlated with random binary labels [N, L]."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_rows, num_labels)) < density).astype(np.int64)
    probs = np.clip(0.35 * labels + 0.65 * rng.random((num_rows, num_labels)), 0.0, 1.0)
    return probs.astype(dtype), labels


def _example_f1_reference(labels, predicted):
    """Loop form of example-based F1, skipping rows with no true and no predicted label."""
    scores = []
    for true_row, pred_row in zip(labels, predicted, strict=True):
        true_set = set(np.flatnonzero(true_row))
        pred_set = set(np.flatnonzero(pred_row))
        if true_set or pred_set:
            scores.append(2.0 * len(true_set & pred_set) / (len(true_set) + len(pred_set)))
    return float(np.mean(scores)) if scores else 0.0


def _precision_at_k_reference(probs, labels, k):
    """Loop form of precision at k; order: descending score, then ascending label index."""
    total = 0.0
    for score_row, true_row in zip(probs, labels, strict=True):
        order = sorted(range(len(score_row)), key=lambda j, row=score_row: (-row[j], j))
        total += sum(true_row[j] for j in order[:k]) / k
    return total / len(probs)


def _threshold_reference(probs, labels, threshold):
    """The five threshold-dependent metrics from scikit-learn and the loop reference."""
    predicted = (probs >= threshold).astype(np.int64)
    if labels.shape[1] == 1:
        # scikit-learn reads an [N, 1] matrix as binary targets, not as one label column:
        # micro and macro F1 are then both the F1 of the positive class.
        micro_f1 = macro_f1 = skm.f1_score(labels[:, 0], predicted[:, 0], zero_division=0)
    else:
        micro_f1 = skm.f1_score(labels, predicted, average="micro", zero_division=0)
        macro_f1 = skm.f1_score(labels, predicted, average="macro", zero_division=0)
    return {
        "hamming_accuracy": 1.0 - skm.hamming_loss(labels, predicted),
        "example_f1": _example_f1_reference(labels, predicted),
        "micro_f1": micro_f1,
        "macro_f1": macro_f1,
        "subset_accuracy": skm.accuracy_score(labels, predicted),
    }


def _full_reference(probs, labels, threshold):
    reference = _threshold_reference(probs, labels, threshold)
    for k in (1, 3, 5):
        reference[f"precision_at_{k}"] = _precision_at_k_reference(probs, labels, k)
    return reference


def _assert_metrics_close(test, actual, expected):
    test.assertEqual(set(actual), set(expected))
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, rtol=0, atol=1e-12, err_msg=name)


def _edge_case(name):
    """Probabilities and labels of the named edge case."""
    rng = np.random.default_rng(7)
    labels = (rng.random((12, 6)) < 0.3).astype(np.int64)
    probs = rng.random((12, 6))
    if name == "all_zero_label_rows":
        labels[::3] = 0
    elif name == "never_positive_classes":
        labels[:, [1, 4]] = 0
        probs[:, 4] = 0.0  # class 4: never true, never predicted
    elif name == "all_zero_predictions":
        probs = 0.4 * probs
    elif name == "all_zero_labels":
        labels[:] = 0
    elif name == "all_zero_labels_and_predictions":
        labels[:] = 0
        probs = 0.4 * probs
    elif name == "perfect_predictions":
        labels[::4] = 0
        labels[:, 2] = 0
        probs = labels.astype(np.float64)
    elif name == "all_positive":
        labels[:] = 1
        probs = 0.5 + 0.5 * probs
    elif name == "single_row":
        labels, probs = labels[:1], probs[:1]
    elif name == "single_column":
        labels, probs = labels[:, :1], probs[:, :1]
    return probs, labels


_EDGE_CASES = tuple(
    (name, name)
    for name in (
        "all_zero_label_rows",
        "never_positive_classes",
        "all_zero_predictions",
        "all_zero_labels",
        "all_zero_labels_and_predictions",
        "perfect_predictions",
        "all_positive",
        "single_row",
        "single_column",
    )
)


class MultilabelMetricsTest(parameterized.TestCase):
    def test_keys_order_and_types(self):
        probs, labels = _random_case(0)
        result = metrics.multilabel_metrics(probs, labels)
        self.assertEqual(tuple(result), metrics.METRIC_NAMES)
        self.assertEqual(
            metrics.METRIC_NAMES,
            (
                "hamming_accuracy",
                "example_f1",
                "micro_f1",
                "macro_f1",
                "subset_accuracy",
                "precision_at_1",
                "precision_at_3",
                "precision_at_5",
            ),
        )
        for name, value in result.items():
            self.assertIs(type(value), float, msg=name)

    @parameterized.product(
        seed=(0, 1, 2),
        threshold=(0.2, 0.5, 0.8),
        density=(0.05, 0.3),
    )
    def test_matches_references_on_random_matrices(self, seed, threshold, density):
        probs, labels = _random_case(seed, density=density)
        result = metrics.multilabel_metrics(probs, labels, threshold)
        _assert_metrics_close(self, result, _full_reference(probs, labels, threshold))

    @parameterized.named_parameters(*_EDGE_CASES)
    def test_edge_case_matches_references(self, name):
        probs, labels = _edge_case(name)
        result = metrics.multilabel_metrics(probs, labels)
        _assert_metrics_close(self, result, _full_reference(probs, labels, 0.5))
        self.assertTrue(all(np.isfinite(v) for v in result.values()))

    def test_perfect_predictions_closed_form(self):
        probs, labels = _edge_case("perfect_predictions")
        result = metrics.multilabel_metrics(probs, labels)
        self.assertEqual(result["hamming_accuracy"], 1.0)
        self.assertEqual(result["subset_accuracy"], 1.0)
        self.assertEqual(result["micro_f1"], 1.0)
        self.assertEqual(result["example_f1"], 1.0)
        # Class 2 is never true and never predicted: it counts as 0.
        present = np.mean(labels.sum(axis=0) > 0)
        self.assertLess(present, 1.0)
        self.assertAlmostEqual(result["macro_f1"], present, places=12)

    def test_perfect_class_scores_exactly_one(self):
        # The official code adds 1e-6 to the denominator and would give 2/(2 + 1e-6) here.
        labels = np.array([[1, 0], [0, 1], [1, 1]])
        result = metrics.multilabel_metrics(labels.astype(np.float32), labels)
        self.assertEqual(result["macro_f1"], 1.0)

    def test_all_zero_labels_and_predictions_give_zero_not_nan(self):
        probs, labels = _edge_case("all_zero_labels_and_predictions")
        result = metrics.multilabel_metrics(probs, labels)
        self.assertEqual(result["example_f1"], 0.0)  # no row qualifies
        self.assertEqual(result["micro_f1"], 0.0)  # 0 / 0
        self.assertEqual(result["macro_f1"], 0.0)
        self.assertEqual(result["hamming_accuracy"], 1.0)
        self.assertEqual(result["subset_accuracy"], 1.0)
        self.assertEqual(result["precision_at_1"], 0.0)

    def test_example_f1_drops_rows_without_true_or_predicted_labels(self):
        labels = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1]])
        probs = np.array([[0.9, 0.1, 0.1], [0.1, 0.2, 0.3], [0.8, 0.7, 0.1]])
        # Row 0: F1 1; row 1: dropped; row 2: tp 1, |true| 2, |pred| 2 -> 0.5.
        result = metrics.multilabel_metrics(probs, labels)
        self.assertAlmostEqual(result["example_f1"], 0.75, places=12)
        # scikit-learn's average="samples" scores the empty row 0 (zero_division=0) and keeps
        # it in the mean, so it differs; the two agree after rescaling to the scored rows.
        predicted = (probs >= 0.5).astype(int)
        samples_f1 = skm.f1_score(labels, predicted, average="samples", zero_division=0)
        self.assertAlmostEqual(samples_f1, 0.5, places=12)

    @parameterized.parameters(0, 1, 2)
    def test_example_f1_equals_sklearn_samples_rescaled(self, seed):
        probs, labels = _random_case(seed, density=0.1)
        labels[::5] = 0
        probs[::5] *= 0.5  # rows with no true and no predicted label
        predicted = (probs >= 0.5).astype(int)
        scored = np.count_nonzero(labels.sum(1) + predicted.sum(1))
        self.assertLess(scored, len(labels))  # some rows are dropped
        samples_f1 = skm.f1_score(labels, predicted, average="samples", zero_division=0)
        result = metrics.multilabel_metrics(probs, labels)
        self.assertAlmostEqual(result["example_f1"] * scored, samples_f1 * len(labels), places=9)

    def test_threshold_is_inclusive(self):
        labels = np.array([[1, 0]])
        probs = np.array([[0.5, 0.49999]])
        result = metrics.multilabel_metrics(probs, labels, threshold=0.5)
        self.assertEqual(result["subset_accuracy"], 1.0)

    def test_float32_probabilities_compare_in_float32(self):
        # float32(0.7) < 0.7 in float64, but `probs >= 0.7` in NumPy compares in float32.
        probs = np.array([[0.7, 0.1]], dtype=np.float32)
        labels = np.array([[1, 0]])
        self.assertTrue(bool((probs >= 0.7)[0, 0]))
        result = metrics.multilabel_metrics(probs, labels, threshold=0.7)
        self.assertEqual(result["subset_accuracy"], 1.0)

    def test_accepts_jax_arrays_and_label_dtypes(self):
        probs, labels = _random_case(3, dtype=np.float32)
        expected = metrics.multilabel_metrics(probs, labels)
        for label_array in (labels.astype(bool), labels.astype(np.float32), jnp.asarray(labels)):
            result = metrics.multilabel_metrics(jnp.asarray(probs), label_array)
            self.assertEqual(result, expected)

    def test_low_precision_probabilities_are_accepted(self):
        probs, labels = _random_case(4)
        probs_bf16 = jnp.asarray(probs, dtype=jnp.bfloat16)
        expected = _full_reference(np.asarray(probs_bf16, dtype=np.float64), labels, 0.5)
        _assert_metrics_close(self, metrics.multilabel_metrics(probs_bf16, labels), expected)


class PrecisionAtKTest(parameterized.TestCase):
    @parameterized.product(seed=(0, 1), k=(1, 2, 3, 5, 7))
    def test_matches_loop_reference(self, seed, k):
        probs, labels = _random_case(seed)
        np.testing.assert_allclose(
            metrics.precision_at_k(probs, labels, k),
            _precision_at_k_reference(probs, labels, k),
            atol=1e-12,
        )

    @parameterized.product(seed=(0, 1, 2), k=(1, 3, 5))
    def test_ties_match_loop_reference(self, seed, k):
        # Scores on a coarse grid produce many ties, also across the k-th place.
        rng = np.random.default_rng(seed)
        probs = rng.integers(0, 3, size=(80, 8)) / 2.0
        labels = (rng.random((80, 8)) < 0.4).astype(int)
        np.testing.assert_allclose(
            metrics.precision_at_k(probs, labels, k),
            _precision_at_k_reference(probs, labels, k),
            atol=1e-12,
        )

    @parameterized.named_parameters(
        ("lowest_index_wins_tie", [[0, 0, 1]], 1, 0.0),
        ("lowest_index_true", [[1, 0, 0]], 1, 1.0),
        ("second_place", [[0, 1, 0]], 3, 1.0 / 3.0),
    )
    def test_tie_break_by_label_index(self, labels, k, expected):
        probs = np.full((1, 3), 0.5)
        self.assertAlmostEqual(metrics.precision_at_k(probs, labels, k), expected, places=12)

    @parameterized.parameters(3, 5)
    def test_k_larger_than_num_labels_divides_by_k(self, k):
        labels = np.array([[1, 1], [0, 1]])
        probs = np.array([[0.2, 0.9], [0.3, 0.1]])
        self.assertAlmostEqual(metrics.precision_at_k(probs, labels, k), 3.0 / (2 * k), places=12)
        self.assertAlmostEqual(
            metrics.multilabel_metrics(probs, labels)[f"precision_at_{k}"], 3.0 / (2 * k)
        )

    def test_does_not_depend_on_threshold(self):
        probs, labels = _random_case(5)
        results = [metrics.multilabel_metrics(probs, labels, t) for t in (0.05, 0.5, 0.95)]
        self.assertNotEqual(results[0]["macro_f1"], results[2]["macro_f1"])
        for k in (1, 3, 5):
            name = f"precision_at_{k}"
            self.assertEqual(len({r[name] for r in results}), 1, msg=name)
        curves = metrics.metrics_over_thresholds(probs, labels, metrics.THRESHOLD_GRID)
        for k in (1, 3, 5):
            np.testing.assert_array_equal(
                curves[f"precision_at_{k}"], results[0][f"precision_at_{k}"]
            )

    @parameterized.parameters(0, -1, 1.5, True)
    def test_invalid_k_raises(self, k):
        with self.assertRaisesRegex(ValueError, "k must be a positive integer"):
            metrics.precision_at_k(np.ones((2, 2)), np.ones((2, 2)), k)


class MeanAucTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("continuous", False, None),
        ("ties", True, None),
        ("several_blocks", True, 40),  # 40 // 20 rows = 2 columns per block
    )
    def test_matches_sklearn(self, quantise, block_elements):
        rng = np.random.default_rng(11)
        labels = (rng.random((20, 7)) < 0.35).astype(int)
        labels[:, 1] = 0  # single-valued classes are skipped
        labels[:, 5] = 1
        probs = np.clip(0.3 * labels + 0.7 * rng.random((20, 7)), 0, 1)
        if quantise:
            probs = np.round(probs * 4) / 4
        expected = np.mean(
            [
                skm.roc_auc_score(labels[:, c], probs[:, c])
                for c in range(7)
                if 0 < labels[:, c].sum() < len(labels)
            ]
        )
        elements = block_elements or metrics._AUC_BLOCK_ELEMENTS
        with mock.patch.object(metrics, "_AUC_BLOCK_ELEMENTS", elements):
            np.testing.assert_allclose(metrics.mean_auc(probs, labels), expected, atol=1e-12)

    def test_no_usable_class_gives_nan(self):
        labels = np.array([[1, 0], [1, 0]])
        self.assertTrue(np.isnan(metrics.mean_auc(np.ones((2, 2)), labels)))


class ThresholdProtocolsTest(parameterized.TestCase):
    def test_grids(self):
        np.testing.assert_allclose(metrics.THRESHOLD_GRID, np.arange(1, 20) * 0.05, atol=1e-12)
        np.testing.assert_allclose(metrics.OFFICIAL_THRESHOLDS, np.arange(1, 10) * 0.1, atol=1e-12)
        self.assertIn(0.5, metrics.THRESHOLD_GRID)
        self.assertIn(0.5, metrics.OFFICIAL_THRESHOLDS)
        self.assertContainsSubset(metrics.OFFICIAL_THRESHOLDS, metrics.THRESHOLD_GRID)

    def test_metrics_over_thresholds_equals_pointwise(self):
        probs, labels = _random_case(6, dtype=np.float32)
        thresholds = (0.7, 0.1, 0.45, 0.5)  # any order
        curves = metrics.metrics_over_thresholds(probs, labels, thresholds)
        self.assertEqual(tuple(curves), metrics.METRIC_NAMES)
        for i, threshold in enumerate(thresholds):
            expected = metrics.multilabel_metrics(probs, labels, threshold)
            for name in metrics.METRIC_NAMES:
                self.assertEqual(curves[name].shape, (len(thresholds),))
                self.assertEqual(curves[name][i], expected[name], msg=(name, threshold))

    def test_fixed_protocol(self):
        probs, labels = _random_case(7)
        self.assertEqual(
            metrics.fixed_protocol(probs, labels), metrics.multilabel_metrics(probs, labels, 0.5)
        )
        self.assertEqual(
            metrics.fixed_protocol(probs, labels, threshold=0.3),
            metrics.multilabel_metrics(probs, labels, 0.3),
        )

    @parameterized.parameters(0, 1, 2)
    def test_official_is_best_per_metric_and_not_below_fixed(self, seed):
        probs, labels = _random_case(seed)
        official = metrics.official_protocol(probs, labels)
        fixed = metrics.fixed_protocol(probs, labels)
        pointwise = [
            _full_reference(probs, labels, t) for t in np.arange(1, 10) / 10.0
        ]  # 0.1 ... 0.9
        for name in metrics.METRIC_NAMES:
            self.assertGreaterEqual(official[name], fixed[name], msg=name)
            np.testing.assert_allclose(
                official[name], max(r[name] for r in pointwise), atol=1e-12, err_msg=name
            )

    @parameterized.parameters("macro_f1", "micro_f1", "example_f1", "hamming_accuracy")
    def test_tune_threshold_picks_the_argmax(self, metric):
        probs, labels = _random_case(8)
        tuned = metrics.tune_threshold(probs, labels, metric=metric)
        self.assertIn(tuned, metrics.THRESHOLD_GRID)
        values = [
            metrics.multilabel_metrics(probs, labels, t)[metric] for t in metrics.THRESHOLD_GRID
        ]
        self.assertEqual(metrics.multilabel_metrics(probs, labels, tuned)[metric], max(values))

    @parameterized.named_parameters(
        ("default_grid", metrics.THRESHOLD_GRID, 0.5),
        ("equal_distance_takes_smaller", (0.2, 0.8), 0.2),
        ("equal_distance_any_order", (0.8, 0.2), 0.2),
        ("closest_to_half", (0.3, 0.9, 0.6), 0.6),
    )
    def test_tune_threshold_tie_break(self, grid, expected):
        # Scores 0 and 1 give the same predictions at every threshold in (0, 1): all tie.
        labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
        probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
        self.assertEqual(metrics.tune_threshold(probs, labels, grid=grid), expected)

    def test_tune_threshold_unknown_metric_raises(self):
        with self.assertRaisesRegex(ValueError, "metric must be one of"):
            metrics.tune_threshold(np.ones((2, 2)), np.ones((2, 2)), metric="accuracy")

    @parameterized.parameters(0.5, 0.33)
    def test_evaluate_protocols(self, threshold):
        val_probs, val_labels = _random_case(9, num_rows=50)
        test_probs, test_labels = _random_case(10, num_rows=70)
        result = metrics.evaluate_protocols(
            val_probs, val_labels, test_probs, test_labels, threshold=threshold
        )
        self.assertEqual(
            set(result), {"val", "test", "val_tuned_threshold", "val_per_metric_thresholds"}
        )
        tuned = result["val_tuned_threshold"]
        self.assertIs(type(tuned), float)
        self.assertEqual(tuned, metrics.tune_threshold(val_probs, val_labels))
        for split, probs, labels in (
            ("val", val_probs, val_labels),
            ("test", test_probs, test_labels),
        ):
            self.assertEqual(set(result[split]), set(metrics.PROTOCOLS))
            self.assertEqual(
                result[split]["fixed"], metrics.multilabel_metrics(probs, labels, threshold)
            )
            self.assertEqual(
                result[split]["val_tuned"], metrics.multilabel_metrics(probs, labels, tuned)
            )
            self.assertEqual(result[split]["official"], metrics.official_protocol(probs, labels))
        self.assertGreaterEqual(
            result["val"]["val_tuned"]["macro_f1"],
            metrics.multilabel_metrics(val_probs, val_labels, 0.5)["macro_f1"],
        )

    def test_evaluate_protocols_tunes_on_validation_only(self):
        val_probs, val_labels = _random_case(11)
        test_probs, test_labels = _random_case(12)
        first = metrics.evaluate_protocols(val_probs, val_labels, test_probs, test_labels)
        second = metrics.evaluate_protocols(val_probs, val_labels, test_probs, 1 - test_labels)
        self.assertEqual(first["val_tuned_threshold"], second["val_tuned_threshold"])
        self.assertEqual(first["val"], second["val"])
        self.assertNotEqual(first["test"], second["test"])

    def test_evaluate_protocols_label_count_mismatch_raises(self):
        with self.assertRaisesRegex(ValueError, "same number of labels"):
            metrics.evaluate_protocols(
                np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 4))
            )


class InputValidationTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("probs_1d", np.ones(3), np.ones(3), r"probs must be 2-D \[N, L\]; got shape \(3,\)"),
        ("labels_3d", np.ones((2, 2)), np.ones((2, 2, 1)), r"labels must be 2-D"),
        ("shape_mismatch", np.ones((2, 3)), np.ones((3, 2)), r"must have the same shape"),
        ("no_rows", np.ones((0, 3)), np.ones((0, 3)), r"at least one row"),
        ("no_columns", np.ones((2, 0)), np.ones((2, 0)), r"one label column"),
        (
            "nan_prob",
            np.array([[0.1, 0.2, 0.3], [0.4, 0.5, np.nan]]),
            np.zeros((2, 3)),
            r"probs must be finite; probs\[1, 2\] = nan \(row 1, column 2; 1 non-finite",
        ),
        (
            "inf_prob",
            np.array([[np.inf, 0.2], [0.4, -np.inf]]),
            np.zeros((2, 2)),
            r"probs\[0, 0\] = inf .*2 non-finite",
        ),
        (
            "label_two",
            np.zeros((3, 2)),
            np.array([[0, 1], [1, 0], [0, 2]]),
            r"labels must be binary \(0 or 1\); labels\[2, 1\] = 2",
        ),
        ("label_nan", np.zeros((1, 2)), np.array([[np.nan, 1.0]]), r"labels\[0, 0\] = nan"),
        ("label_negative", np.zeros((1, 2)), np.array([[0, -1]]), r"labels\[0, 1\] = -1"),
        ("string_probs", np.array([["a", "b"]]), np.zeros((1, 2)), r"must hold real numbers"),
        ("string_labels", np.zeros((1, 2)), np.array([["0", "1"]]), r"labels must hold 0 and 1"),
    )
    def test_bad_arrays_raise(self, probs, labels, message):
        with self.assertRaisesRegex(ValueError, message):
            metrics.multilabel_metrics(probs, labels)
        with self.assertRaisesRegex(ValueError, message):
            metrics.metrics_over_thresholds(probs, labels, metrics.OFFICIAL_THRESHOLDS)

    @parameterized.named_parameters(
        ("nan", float("nan"), "threshold must be finite"),
        ("inf", float("inf"), "threshold must be finite"),
        ("string", "half", "threshold must be a real number"),
    )
    def test_bad_threshold_raises(self, threshold, message):
        with self.assertRaisesRegex(ValueError, message):
            metrics.multilabel_metrics(np.ones((2, 2)), np.ones((2, 2)), threshold)

    @parameterized.named_parameters(
        ("empty", (), "must be a non-empty 1-D"),
        ("scalar", 0.5, "must be a non-empty 1-D"),
        ("nan", (0.5, float("nan")), "must be finite"),
        ("strings", ("a",), "must be real numbers"),
    )
    def test_bad_thresholds_raise(self, thresholds, message):
        with self.assertRaisesRegex(ValueError, "thresholds " + message):
            metrics.metrics_over_thresholds(np.ones((2, 2)), np.ones((2, 2)), thresholds)
        with self.assertRaisesRegex(ValueError, "grid " + message):
            metrics.tune_threshold(np.ones((2, 2)), np.ones((2, 2)), grid=thresholds)

    def test_evaluate_protocols_names_the_bad_argument(self):
        good = np.ones((2, 2))
        bad = np.array([[0.5, np.nan], [0.5, 0.5]])
        with self.assertRaisesRegex(ValueError, r"val_probs\[0, 1\] = nan"):
            metrics.evaluate_protocols(bad, good, good, good)
        with self.assertRaisesRegex(ValueError, r"test_labels must be binary"):
            metrics.evaluate_protocols(good, good, good, 2 * good)


if __name__ == "__main__":
    absltest.main()
