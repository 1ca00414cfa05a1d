"""Tests for cgmvae_jax.metrics: metric values, edge cases, threshold protocols, validation.

Two independent oracles score every metric: `_loop_metrics`, the definitions written as float64
loops over entries, and `_sklearn_metrics`, scikit-learn's f1_score (average="samples",
"micro", per class), hamming_loss and accuracy_score. ROC AUC is checked against
`roc_auc_score`. Protocol tests brute-force the threshold choices over the grid.
"""

import functools
from unittest import mock

import chex
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from sklearn import metrics as skm

from cgmvae_jax import metrics
from tests import helpers

_PRECISION_NAMES = tuple(f"precision_at_{k}" for k in metrics.TOP_K)
_THRESHOLDED_NAMES = tuple(n for n in metrics.METRIC_NAMES if n not in _PRECISION_NAMES)


def _random_case(seed, num_rows=60, num_labels=9, density=0.2, dtype=np.float64):
    """Random probabilities [N, L] loosely correlated with random binary labels [N, L]."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_rows, num_labels)) < density).astype(np.int64)
    probs = np.clip(0.35 * labels + 0.65 * rng.random((num_rows, num_labels)), 0.0, 1.0)
    return probs.astype(dtype), labels


def _overlapping_case(seed, num_rows=80, num_labels=9, density=0.2):
    """Sigmoid of noisy logits [N, L]: scores of positives and negatives overlap, so the
    best threshold differs between metrics (unlike `_random_case`, which is separable at
    0.65 and so favours every metric's threshold alike)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((num_rows, num_labels)) < density).astype(np.int64)
    logits = 2.0 * labels - 1.5 + rng.normal(scale=1.2, size=labels.shape)
    return 1.0 / (1.0 + np.exp(-logits)), labels


# ----------------------------------------------------------------------------------------------
# Oracles.


def _precision_at_k_loop(probs, labels, k):
    """Loop form of precision at k; order: descending score, then ascending label index."""
    scores = np.asarray(probs, dtype=np.float64)  # exact for float32/bfloat16 inputs
    hits = 0
    for score_row, true_row in zip(scores, labels, strict=True):
        order = sorted(range(len(score_row)), key=lambda j, row=score_row: (-row[j], j))
        hits += sum(int(true_row[j]) for j in order[:k])
    return hits / k / len(scores)


def _loop_metrics(probs, labels, threshold):
    """Every metric from its definition, one entry at a time, in float64."""
    predicted = np.asarray(probs) >= threshold  # NumPy compares in the dtype of probs
    num_rows, num_labels = labels.shape
    tp, fp, fn = [0] * num_labels, [0] * num_labels, [0] * num_labels
    wrong = exact_rows = 0
    row_f1 = []
    for i in range(num_rows):
        row_tp = row_true = row_pred = 0
        for j in range(num_labels):
            y, p = bool(labels[i, j]), bool(predicted[i, j])
            row_true, row_pred, row_tp = row_true + y, row_pred + p, row_tp + (y and p)
            tp[j], fp[j], fn[j] = tp[j] + (y and p), fp[j] + (p and not y), fn[j] + (y and not p)
            wrong += y != p
        exact_rows += row_tp == row_true == row_pred
        if row_true + row_pred:  # rows with no true and no predicted label are dropped
            row_f1.append(2.0 * row_tp / (row_true + row_pred))
    class_f1 = [
        2.0 * t / (2 * t + f + n) if t + f + n else 0.0 for t, f, n in zip(tp, fp, fn, strict=True)
    ]
    micro_denominator = 2 * sum(tp) + sum(fp) + sum(fn)
    result = {
        "hamming_accuracy": 1.0 - wrong / (num_rows * num_labels),
        "example_f1": sum(row_f1) / len(row_f1) if row_f1 else 0.0,
        "micro_f1": 2.0 * sum(tp) / micro_denominator if micro_denominator else 0.0,
        "macro_f1": sum(class_f1) / num_labels,
        "subset_accuracy": exact_rows / num_rows,
    }
    for k in metrics.TOP_K:
        result[f"precision_at_{k}"] = _precision_at_k_loop(probs, labels, k)
    return result


def _sklearn_metrics(probs, labels, threshold):
    """The five thresholded metrics from scikit-learn."""
    predicted = (np.asarray(probs) >= threshold).astype(np.int64)
    # An all-zero extra column changes no row's counts and adds one class scoring 0 (dropped
    # below); without it scikit-learn reads an [N, 1] matrix as binary targets, for which
    # average="samples" is undefined.
    f1 = functools.partial(
        skm.f1_score, np.pad(labels, ((0, 0), (0, 1))), np.pad(predicted, ((0, 0), (0, 1)))
    )
    # average="samples" scores a row with no true and no predicted label as 0 and keeps it in
    # the mean; example_f1 drops such rows, so rescale to the scored rows.
    scored_rows = np.count_nonzero(labels.sum(axis=1) + predicted.sum(axis=1))
    samples_f1 = f1(average="samples", zero_division=0)
    return {
        "hamming_accuracy": 1.0 - skm.hamming_loss(labels, predicted),
        "example_f1": samples_f1 * len(labels) / scored_rows if scored_rows else 0.0,
        "micro_f1": f1(average="micro", zero_division=0),
        "macro_f1": f1(average=None, zero_division=0)[:-1].mean(),
        "subset_accuracy": skm.accuracy_score(labels, predicted),
    }


def _assert_close(actual, expected, atol=1e-12):
    """Same keys and values within `atol` (dicts of floats or arrays)."""
    chex.assert_trees_all_close(actual, expected, atol=atol, rtol=0)


def _assert_matches_oracles(probs, labels, threshold=0.5):
    """multilabel_metrics agrees with both oracles; returns its result."""
    result = metrics.multilabel_metrics(probs, labels, threshold)
    _assert_close(result, _loop_metrics(probs, labels, threshold))
    _assert_close(
        {n: result[n] for n in _THRESHOLDED_NAMES}, _sklearn_metrics(probs, labels, threshold)
    )
    return result


def _brute_force(probs, labels):
    """Per metric, the `THRESHOLD_GRID` threshold with the largest value, and that value.

    Values come from `multilabel_metrics` at every grid threshold (so ties are exact). Ties go
    to the threshold nearest 0.5, then the smaller, compared in grid steps (threshold =
    step / 20) so that no float rounding enters the tie-break.
    """
    table = [metrics.multilabel_metrics(probs, labels, t) for t in metrics.THRESHOLD_GRID]
    chosen, best = {}, {}
    for name in metrics.METRIC_NAMES:
        values = [row[name] for row in table]
        best[name] = max(values)
        steps = [i + 1 for i, value in enumerate(values) if value == best[name]]
        chosen[name] = metrics.THRESHOLD_GRID[min(steps, key=lambda s: (abs(s - 10), s)) - 1]
    return chosen, best


# ----------------------------------------------------------------------------------------------
# Edge cases.


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
    elif name == "tied_scores":
        probs = np.round(probs * 2) / 2  # 0, 0.5 or 1: ties at the threshold and the top k
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
        "tied_scores",
    )
)


class MultilabelMetricsTest(parameterized.TestCase):
    def test_keys_order_and_types(self):
        self.assertEqual(set(metrics.METRIC_NAMES), helpers.METRIC_KEYS)  # DESIGN.md §5
        self.assertLen(metrics.METRIC_NAMES, len(helpers.METRIC_KEYS))  # no name twice
        probs, labels = _random_case(0)
        result = metrics.multilabel_metrics(probs, labels)
        self.assertEqual(tuple(result), metrics.METRIC_NAMES)
        for name, value in result.items():
            self.assertIs(type(value), float, msg=name)

    @parameterized.product(
        seed=(0, 1, 2),
        threshold=(0.2, 0.5, 0.8),
        density=(0.05, 0.3),
        dtype=(np.float32, np.float64),
    )
    def test_matches_oracles_on_random_matrices(self, seed, threshold, density, dtype):
        probs, labels = _random_case(seed, density=density, dtype=dtype)
        _assert_matches_oracles(probs, labels, threshold)

    @parameterized.named_parameters(*_EDGE_CASES)
    def test_edge_case_matches_oracles(self, name):
        probs, labels = _edge_case(name)
        result = _assert_matches_oracles(probs, labels)
        self.assertTrue(all(np.isfinite(v) for v in result.values()))

    def test_oracles_agree_on_example_f1_with_dropped_rows(self):
        # The rescaling in _sklearn_metrics matters here: some rows have no true and no
        # predicted label, and scikit-learn's raw average="samples" is lower.
        probs, labels = _random_case(3, density=0.1)
        labels[::5] = 0
        probs[::5] *= 0.5
        loop = _loop_metrics(probs, labels, 0.5)["example_f1"]
        predicted = (probs >= 0.5).astype(int)
        raw = skm.f1_score(labels, predicted, average="samples", zero_division=0)
        self.assertLess(raw, loop - 0.01)
        self.assertAlmostEqual(_sklearn_metrics(probs, labels, 0.5)["example_f1"], loop, places=12)

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
            chex.assert_trees_all_equal(result, expected)

    def test_low_precision_probabilities_are_accepted(self):
        probs, labels = _random_case(4)
        probs_bf16 = jnp.asarray(probs, dtype=jnp.bfloat16)
        expected = _loop_metrics(np.asarray(probs_bf16, dtype=np.float64), labels, 0.5)
        _assert_close(metrics.multilabel_metrics(probs_bf16, labels), expected)


class PrecisionAtKTest(parameterized.TestCase):
    @parameterized.product(seed=(0, 1), k=(1, 2, 3, 5, 7))
    def test_matches_loop_oracle(self, seed, k):
        probs, labels = _random_case(seed)
        np.testing.assert_allclose(
            metrics.precision_at_k(probs, labels, k),
            _precision_at_k_loop(probs, labels, k),
            rtol=0,
            atol=1e-12,
        )

    @parameterized.product(seed=(0, 1, 2), k=(1, 3, 5))
    def test_ties_match_loop_oracle(self, seed, k):
        # Scores on a coarse grid produce many ties, also across the k-th place.
        rng = np.random.default_rng(seed)
        probs = rng.integers(0, 3, size=(80, 8)) / 2.0
        labels = (rng.random((80, 8)) < 0.4).astype(int)
        np.testing.assert_allclose(
            metrics.precision_at_k(probs, labels, k),
            _precision_at_k_loop(probs, labels, k),
            rtol=0,
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
        for name in _PRECISION_NAMES:
            self.assertEqual(len({r[name] for r in results}), 1, msg=name)
        curves = metrics.metrics_over_thresholds(probs, labels, metrics.THRESHOLD_GRID)
        for name in _PRECISION_NAMES:
            np.testing.assert_array_equal(curves[name], results[0][name], err_msg=name)

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
    def test_grids_and_protocol_names(self):
        np.testing.assert_allclose(metrics.THRESHOLD_GRID, np.arange(1, 20) * 0.05, atol=1e-12)
        np.testing.assert_allclose(metrics.OFFICIAL_THRESHOLDS, np.arange(1, 10) * 0.1, atol=1e-12)
        self.assertIn(0.5, metrics.THRESHOLD_GRID)
        self.assertIn(0.5, metrics.OFFICIAL_THRESHOLDS)
        self.assertContainsSubset(metrics.OFFICIAL_THRESHOLDS, metrics.THRESHOLD_GRID)
        # The results.json keys (DESIGN.md §6), in the order evaluate_protocols returns them.
        probs, labels = _random_case(0)
        result = metrics.evaluate_protocols(probs, labels, probs, labels)
        self.assertEqual(tuple(result["test"]), metrics.PROTOCOLS)
        self.assertContainsSubset(
            {"fixed", "val_tuned", "val_per_metric", "official"}, result["val"]
        )

    def test_metrics_over_thresholds_equals_pointwise(self):
        probs, labels = _random_case(6, dtype=np.float32)
        thresholds = (0.7, 0.1, 0.45, 0.5)  # any order
        curves = metrics.metrics_over_thresholds(probs, labels, thresholds)
        self.assertEqual(tuple(curves), metrics.METRIC_NAMES)
        chex.assert_shape(list(curves.values()), (len(thresholds),))
        chex.assert_type(list(curves.values()), np.float64)
        pointwise = [metrics.multilabel_metrics(probs, labels, t) for t in thresholds]
        expected = {name: np.array([p[name] for p in pointwise]) for name in metrics.METRIC_NAMES}
        chex.assert_trees_all_equal(curves, expected)

    def test_fixed_protocol(self):
        probs, labels = _random_case(7)
        for threshold in (0.5, 0.3):
            _assert_close(
                metrics.fixed_protocol(probs, labels, threshold=threshold),
                _loop_metrics(probs, labels, threshold),
            )
        chex.assert_trees_all_equal(
            metrics.fixed_protocol(probs, labels), metrics.multilabel_metrics(probs, labels, 0.5)
        )

    @parameterized.parameters(0, 1, 2)
    def test_official_is_best_per_metric_and_not_below_fixed(self, seed):
        probs, labels = _overlapping_case(seed)
        official = metrics.official_protocol(probs, labels)
        pointwise = [_loop_metrics(probs, labels, t) for t in np.arange(1, 10) / 10.0]
        best = {name: max(p[name] for p in pointwise) for name in metrics.METRIC_NAMES}
        _assert_close(official, best)
        fixed = metrics.fixed_protocol(probs, labels)
        for name in metrics.METRIC_NAMES:
            self.assertGreaterEqual(official[name], fixed[name], msg=name)

    @parameterized.parameters("macro_f1", "micro_f1", "example_f1", "hamming_accuracy")
    def test_tune_threshold_picks_the_argmax(self, metric):
        probs, labels = _overlapping_case(8)
        chosen, _ = _brute_force(probs, labels)
        self.assertEqual(metrics.tune_threshold(probs, labels, metric=metric), chosen[metric])

    @parameterized.named_parameters(
        ("default_grid", metrics.THRESHOLD_GRID, 0.5),
        ("equal_distance_takes_smaller", (0.2, 0.8), 0.2),
        ("equal_distance_any_order", (0.8, 0.2), 0.2),
        ("closest_to_half", (0.3, 0.9, 0.6), 0.6),
    )
    def test_tie_break(self, grid, expected):
        # Scores 0 and 1 give the same predictions at every threshold in (0, 1): all tie.
        labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
        probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
        self.assertEqual(metrics.tune_threshold(probs, labels, grid=grid), expected)
        chosen = metrics.tune_thresholds(probs, labels, grid=grid)
        self.assertEqual(chosen, dict.fromkeys(metrics.METRIC_NAMES, expected))

    def test_tune_threshold_unknown_metric_raises(self):
        with self.assertRaisesRegex(ValueError, "metric must be one of"):
            metrics.tune_threshold(np.ones((2, 2)), np.ones((2, 2)), metric="accuracy")

    @parameterized.parameters(0.5, 0.33)
    def test_evaluate_protocols(self, threshold):
        val_probs, val_labels = _overlapping_case(9, num_rows=50)
        test_probs, test_labels = _overlapping_case(10, num_rows=70)
        result = metrics.evaluate_protocols(
            val_probs, val_labels, test_probs, test_labels, threshold=threshold
        )
        self.assertEqual(
            set(result), {"val", "test", "val_tuned_threshold", "val_per_metric_thresholds"}
        )
        tuned = result["val_tuned_threshold"]
        self.assertIs(type(tuned), float)
        self.assertEqual(tuned, metrics.tune_threshold(val_probs, val_labels))
        chosen = result["val_per_metric_thresholds"]
        self.assertEqual(tuple(chosen), metrics.METRIC_NAMES)
        expected_chosen, val_best = _brute_force(val_probs, val_labels)
        self.assertEqual(chosen, expected_chosen)
        self.assertEqual(chosen["macro_f1"], tuned)
        for name, value in chosen.items():
            self.assertIs(type(value), float, msg=name)
        # val_per_metric: on validation each metric's best over the grid; on test each metric
        # at its own threshold.
        chex.assert_trees_all_equal(result["val"]["val_per_metric"], val_best)
        chex.assert_trees_all_equal(
            result["test"]["val_per_metric"],
            {
                name: metrics.multilabel_metrics(test_probs, test_labels, chosen[name])[name]
                for name in metrics.METRIC_NAMES
            },
        )
        for split, probs, labels in (
            ("val", val_probs, val_labels),
            ("test", test_probs, test_labels),
        ):
            self.assertEqual(tuple(result[split]), metrics.PROTOCOLS)
            chex.assert_trees_all_equal(
                result[split],
                {
                    "fixed": metrics.multilabel_metrics(probs, labels, threshold),
                    "val_tuned": metrics.multilabel_metrics(probs, labels, tuned),
                    "val_per_metric": metrics.per_metric_protocol(probs, labels, chosen),
                    "official": metrics.official_protocol(probs, labels),
                },
            )
        self.assertGreaterEqual(
            result["val"]["val_tuned"]["macro_f1"], result["val"]["fixed"]["macro_f1"]
        )

    def test_evaluate_protocols_tunes_on_validation_only(self):
        val_probs, val_labels = _overlapping_case(11)
        test_probs, test_labels = _overlapping_case(12)
        first = metrics.evaluate_protocols(val_probs, val_labels, test_probs, test_labels)
        second = metrics.evaluate_protocols(val_probs, val_labels, test_probs, 1 - test_labels)
        for key in ("val", "val_tuned_threshold", "val_per_metric_thresholds"):
            chex.assert_trees_all_equal(first[key], second[key])
        for protocol in metrics.PROTOCOLS:
            self.assertNotEqual(first["test"][protocol], second["test"][protocol], msg=protocol)

    def test_evaluate_protocols_label_count_mismatch_raises(self):
        with self.assertRaisesRegex(ValueError, "same number of labels"):
            metrics.evaluate_protocols(
                np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 4))
            )


class ValPerMetricTest(parameterized.TestCase):
    """The val_per_metric protocol: tune_thresholds, per_metric_protocol, evaluate_protocols."""

    @parameterized.parameters(0, 2, 4, 8)
    def test_tune_thresholds_maximise_each_metric(self, seed):
        probs, labels = _overlapping_case(seed)
        chosen = metrics.tune_thresholds(probs, labels)
        self.assertEqual(tuple(chosen), metrics.METRIC_NAMES)
        expected_chosen, best = _brute_force(probs, labels)
        self.assertEqual(chosen, expected_chosen)
        # The metrics disagree on their best threshold, so one threshold could not serve all.
        self.assertGreater(len({chosen[n] for n in _THRESHOLDED_NAMES}), 1)
        # Independently of the implementation, the oracle scores each choice at the maximum.
        oracle = {t: _loop_metrics(probs, labels, t) for t in metrics.THRESHOLD_GRID}
        for name in metrics.METRIC_NAMES:
            oracle_best = max(row[name] for row in oracle.values())
            self.assertAlmostEqual(oracle[chosen[name]][name], oracle_best, places=12, msg=name)
            self.assertEqual(chosen[name], metrics.tune_threshold(probs, labels, metric=name))

    @parameterized.named_parameters(*_EDGE_CASES)
    def test_tune_thresholds_edge_cases(self, name):
        probs, labels = _edge_case(name)
        chosen = metrics.tune_thresholds(probs, labels)
        self.assertEqual(chosen, _brute_force(probs, labels)[0])
        for precision_name in _PRECISION_NAMES:  # independent of the threshold: all tie
            self.assertEqual(chosen[precision_name], 0.5)

    @parameterized.named_parameters(
        ("without_half", (0.3, 0.7, 0.9), 0.3),
        ("one_threshold", (0.85,), 0.85),
        ("unsorted", (0.9, 0.45, 0.6), 0.45),
    )
    def test_precision_at_k_gets_grid_value_nearest_half(self, grid, expected):
        probs, labels = _overlapping_case(1)
        chosen = metrics.tune_thresholds(probs, labels, grid=grid)
        for name in metrics.METRIC_NAMES:
            self.assertIn(chosen[name], grid, msg=name)
        for name in _PRECISION_NAMES:
            self.assertEqual(chosen[name], expected, msg=name)

    @parameterized.named_parameters(
        ("tuned", None),
        ("off_grid_and_repeated", dict.fromkeys(metrics.METRIC_NAMES, 0.37) | {"macro_f1": 0.71}),
        (
            "numpy_scalars",
            {n: np.float32(0.25 + 0.05 * i) for i, n in enumerate(metrics.METRIC_NAMES)},
        ),
    )
    def test_per_metric_protocol_equals_pointwise(self, thresholds):
        probs, labels = _overlapping_case(3)
        thresholds = thresholds or metrics.tune_thresholds(probs, labels)
        result = metrics.per_metric_protocol(probs, labels, thresholds)
        self.assertEqual(tuple(result), metrics.METRIC_NAMES)
        expected = {
            name: _loop_metrics(probs, labels, float(thresholds[name]))[name]
            for name in metrics.METRIC_NAMES
        }
        _assert_close(result, expected)

    @parameterized.parameters(0, 2, 4, 6, 8)
    def test_validation_val_per_metric_is_at_least_every_other_protocol(self, seed):
        val_probs, val_labels = _overlapping_case(seed)
        test_probs, test_labels = _overlapping_case(seed + 1)
        result = metrics.evaluate_protocols(val_probs, val_labels, test_probs, test_labels)
        val = result["val"]
        for name in metrics.METRIC_NAMES:
            for protocol in ("fixed", "val_tuned", "official"):
                self.assertGreaterEqual(
                    val["val_per_metric"][name], val[protocol][name], msg=(protocol, name)
                )
        self.assertEqual(val["val_per_metric"]["macro_f1"], val["val_tuned"]["macro_f1"])
        better = [n for n in metrics.METRIC_NAMES if val["val_per_metric"][n] > val["val_tuned"][n]]
        self.assertNotEmpty(better)  # per-metric thresholds do help on validation

    @parameterized.parameters(0, 8, 10)  # seeds where some thresholds fall on the official grid
    def test_test_val_per_metric_is_at_most_the_test_oracle(self, seed):
        # Choosing on the test labels (official) can only do better, but official searches
        # the coarser OFFICIAL_THRESHOLDS: the bound holds against official where the chosen
        # threshold is on that grid, and against the best over THRESHOLD_GRID always.
        val_probs, val_labels = _overlapping_case(seed)
        test_probs, test_labels = _overlapping_case(seed + 1)
        result = metrics.evaluate_protocols(val_probs, val_labels, test_probs, test_labels)
        test, chosen = result["test"], result["val_per_metric_thresholds"]
        _, test_best = _brute_force(test_probs, test_labels)
        for name in metrics.METRIC_NAMES:
            self.assertLessEqual(test["val_per_metric"][name], test_best[name], msg=name)
            if chosen[name] in metrics.OFFICIAL_THRESHOLDS:
                self.assertLessEqual(test["val_per_metric"][name], test["official"][name], msg=name)
        on_official_grid = [
            n for n in _THRESHOLDED_NAMES if chosen[n] in metrics.OFFICIAL_THRESHOLDS
        ]
        self.assertNotEmpty(on_official_grid)

    def test_val_per_metric_can_beat_official_off_the_official_grid(self):
        # Negatives score 0.92 and positives 0.97: only thresholds in (0.92, 0.97] separate
        # them. THRESHOLD_GRID has 0.95; OFFICIAL_THRESHOLDS stops at 0.9 and predicts all.
        rng = np.random.default_rng(0)
        val_labels = (rng.random((40, 6)) < 0.3).astype(int)
        test_labels = (rng.random((50, 6)) < 0.3).astype(int)
        result = metrics.evaluate_protocols(
            0.92 + 0.05 * val_labels, val_labels, 0.92 + 0.05 * test_labels, test_labels
        )
        for name in _THRESHOLDED_NAMES:
            self.assertEqual(result["val_per_metric_thresholds"][name], 0.95, msg=name)
            self.assertEqual(result["test"]["val_per_metric"][name], 1.0, msg=name)
            self.assertLess(result["test"]["official"][name], 1.0, msg=name)

    def test_precision_at_k_unchanged_by_val_per_metric(self):
        val_probs, val_labels = _overlapping_case(5)
        test_probs, test_labels = _overlapping_case(6)
        result = metrics.evaluate_protocols(val_probs, val_labels, test_probs, test_labels)
        for split in ("val", "test"):
            for name in _PRECISION_NAMES:
                values = {result[split][p][name] for p in metrics.PROTOCOLS}
                self.assertLen(values, 1, msg=(split, name))


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
        half = dict.fromkeys(metrics.METRIC_NAMES, 0.5)
        for function in (
            metrics.multilabel_metrics,
            functools.partial(metrics.metrics_over_thresholds, thresholds=(0.1, 0.5)),
            functools.partial(metrics.per_metric_protocol, thresholds=half),
        ):
            with self.assertRaisesRegex(ValueError, message):
                function(probs, labels)

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
        for function in (metrics.tune_threshold, metrics.tune_thresholds):
            with self.assertRaisesRegex(ValueError, "grid " + message):
                function(np.ones((2, 2)), np.ones((2, 2)), grid=thresholds)

    @parameterized.named_parameters(
        ("not_a_mapping", (0.5,) * 8, r"must map every metric name"),
        (
            "missing_metric",
            {n: 0.5 for n in metrics.METRIC_NAMES if n != "micro_f1"},
            r"missing \['micro_f1'\], unknown \[\]",
        ),
        (
            "unknown_metric",
            dict.fromkeys(metrics.METRIC_NAMES, 0.5) | {"mean_auc": 0.5},
            r"missing \[\], unknown \['mean_auc'\]",
        ),
        (
            "nan_threshold",
            dict.fromkeys(metrics.METRIC_NAMES, 0.5) | {"example_f1": float("nan")},
            r"thresholds\['example_f1'\] must be finite",
        ),
        (
            "string_threshold",
            dict.fromkeys(metrics.METRIC_NAMES, 0.5) | {"macro_f1": "high"},
            r"thresholds\['macro_f1'\] must be a real number",
        ),
    )
    def test_per_metric_protocol_bad_thresholds_raise(self, thresholds, message):
        with self.assertRaisesRegex(ValueError, message):
            metrics.per_metric_protocol(np.ones((2, 2)), np.ones((2, 2)), thresholds)

    def test_evaluate_protocols_names_the_bad_argument(self):
        good = np.ones((2, 2))
        bad = np.array([[0.5, np.nan], [0.5, 0.5]])
        with self.assertRaisesRegex(ValueError, r"val_probs\[0, 1\] = nan"):
            metrics.evaluate_protocols(bad, good, good, good)
        with self.assertRaisesRegex(ValueError, r"test_labels must be binary"):
            metrics.evaluate_protocols(good, good, good, 2 * good)
        with self.assertRaisesRegex(ValueError, r"val_labels must be binary"):
            metrics.tune_thresholds(good, 2 * good)


if __name__ == "__main__":
    absltest.main()
