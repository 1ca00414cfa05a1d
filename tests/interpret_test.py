"""Tests of cgmvae_jax.interpret: similarity, co-occurrence, clustering, rank correlation, plots."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import interpret
from tests import helpers

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAS_MPL = importlib.util.find_spec("matplotlib") is not None
_NO_MPL = 'matplotlib is not installed (pip install -e ".[plot]")'
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _two_blocks(num_labels=8, dim=6, seed=0):
    """Embeddings of two groups of labels around two orthogonal directions, shuffled.

    Returns:
      (embeddings [L, E], group [L] in {0, 1}).
    """
    rng = np.random.default_rng(seed)
    group = rng.permutation(np.arange(num_labels) % 2)
    centres = np.eye(dim)[:2] * 3.0
    w = centres[group] + 0.1 * rng.standard_normal((num_labels, dim))
    return w, group


class LabelSimilarityTest(parameterized.TestCase):
    @parameterized.named_parameters(("inner", False), ("cosine", True))
    def test_symmetric_with_nan_diagonal(self, cosine):
        w = np.random.default_rng(1).standard_normal((7, 5))
        sim = interpret.label_similarity(w, cosine=cosine)
        self.assertEqual(sim.shape, (7, 7))
        self.assertTrue(np.all(np.isnan(np.diag(sim))))
        off = ~np.eye(7, dtype=bool)
        self.assertTrue(np.all(np.isfinite(sim[off])))
        np.testing.assert_array_equal(sim[off], sim.T[off])

    def test_inner_products_match_loop(self):
        w = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
        sim = interpret.label_similarity(w)
        for i in range(5):
            for j in range(5):
                if i != j:
                    expected = sum(float(w[i, k]) * float(w[j, k]) for k in range(4))
                    self.assertAlmostEqual(sim[i, j], expected, places=5)

    def test_cosine_in_unit_interval_and_scale_free(self):
        rng = np.random.default_rng(3)
        w = rng.standard_normal((9, 4)) * rng.uniform(0.01, 100, size=(9, 1))
        sim = interpret.label_similarity(w, cosine=True)
        off = ~np.eye(9, dtype=bool)
        self.assertTrue(np.all(sim[off] <= 1.0) and np.all(sim[off] >= -1.0))
        scaled = interpret.label_similarity(w * rng.uniform(0.5, 5, size=(9, 1)), cosine=True)
        np.testing.assert_allclose(sim[off], scaled[off], atol=1e-12)
        parallel = interpret.label_similarity(np.array([[1.0, 0.0], [2.0, 0.0]]), cosine=True)
        self.assertAlmostEqual(parallel[0, 1], 1.0)

    def test_zero_embedding_gives_zero_cosine(self):
        sim = interpret.label_similarity(np.array([[0.0, 0.0], [1.0, 2.0]]), cosine=True)
        self.assertEqual(sim[0, 1], 0.0)

    def test_batched_over_seeds(self):
        w = np.random.default_rng(4).standard_normal((3, 6, 5))
        sims = interpret.label_similarity(w)
        self.assertEqual(sims.shape, (3, 6, 6))
        np.testing.assert_allclose(sims[1], interpret.label_similarity(w[1]))


class CooccurrenceTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        # Labels 0 and 1 always together, 2 only without them, 3 independent of 0.
        self.y = np.array(
            [
                [1, 1, 0, 1],
                [1, 1, 0, 0],
                [0, 0, 1, 1],
                [0, 0, 1, 0],
            ]
        )

    def test_npmi_values(self):
        c = interpret.cooccurrence(self.y)
        self.assertAlmostEqual(c[0, 1], 1.0)  # always together
        self.assertAlmostEqual(c[0, 2], -1.0)  # never together
        self.assertAlmostEqual(c[0, 3], 0.0, places=12)  # p(0,3) = p(0) p(3)
        self.assertTrue(np.all(np.isnan(np.diag(c))))
        np.testing.assert_array_equal(np.nan_to_num(c), np.nan_to_num(c.T))

    def test_npmi_matches_formula(self):
        rng = np.random.default_rng(5)
        y = rng.random((200, 5)) < 0.4
        c = interpret.cooccurrence(y)
        for i in range(5):
            for j in range(5):
                if i == j:
                    continue
                p_ij = np.mean(y[:, i] & y[:, j])
                p_i, p_j = np.mean(y[:, i]), np.mean(y[:, j])
                expected = np.log(p_ij / (p_i * p_j)) / -np.log(p_ij)
                self.assertAlmostEqual(c[i, j], expected, places=10)

    def test_jaccard_and_count(self):
        jac = interpret.cooccurrence(self.y, kind="jaccard")
        self.assertAlmostEqual(jac[0, 1], 1.0)
        self.assertAlmostEqual(jac[0, 3], 1.0 / 3.0)
        count = interpret.cooccurrence(self.y, kind="count")
        self.assertAlmostEqual(count[0, 3], 0.25)

    def test_label_that_never_occurs(self):
        y = np.array([[1, 0, 1], [1, 0, 0]])
        c = interpret.cooccurrence(y)
        self.assertEqual(c[0, 1], -1.0)
        off = ~np.eye(3, dtype=bool)
        self.assertTrue(np.all(np.isfinite(c[off])))

    def test_bad_kind(self):
        with self.assertRaisesRegex(ValueError, "kind"):
            interpret.cooccurrence(self.y, kind="pmi2")


class ClusterOrderTest(parameterized.TestCase):
    @parameterized.named_parameters(("inner", False), ("cosine", True))
    def test_groups_two_blocks(self, cosine):
        w, group = _two_blocks(num_labels=10)
        order = interpret.cluster_order(interpret.label_similarity(w, cosine=cosine))
        self.assertEqual(sorted(order.tolist()), list(range(10)))
        ordered = group[order]
        # Contiguous blocks: the group changes exactly once along the order.
        self.assertEqual(int(np.sum(ordered[1:] != ordered[:-1])), 1)

    def test_tiny_and_nan_inputs(self):
        np.testing.assert_array_equal(interpret.cluster_order(np.full((1, 1), np.nan)), [0])
        np.testing.assert_array_equal(interpret.cluster_order(np.ones((2, 2))), [0, 1])
        sim = interpret.label_similarity(np.random.default_rng(6).standard_normal((5, 3)))
        sim[0, 3] = sim[3, 0] = np.nan
        order = interpret.cluster_order(sim)
        self.assertEqual(sorted(order.tolist()), list(range(5)))


class RankCorrelationTest(parameterized.TestCase):
    def test_identical_is_one(self):
        sim = interpret.label_similarity(np.random.default_rng(7).standard_normal((6, 4)))
        self.assertAlmostEqual(interpret.rank_correlation(sim, sim), 1.0)

    def test_monotone_transform_and_reversal(self):
        sim = interpret.label_similarity(np.random.default_rng(8).standard_normal((6, 4)))
        self.assertAlmostEqual(interpret.rank_correlation(sim, np.exp(sim)), 1.0)
        self.assertAlmostEqual(interpret.rank_correlation(sim, -sim), -1.0)

    def test_uses_upper_triangle_only(self):
        # Only the upper triangle is read: a lower triangle that disagrees changes nothing.
        a = np.array([[0, 1, 2], [9, 0, 3], [9, 9, 0]], dtype=float)
        b = np.array([[0, 10, 20], [-5, 0, 30], [-7, -8, 0]], dtype=float)
        self.assertAlmostEqual(interpret.rank_correlation(a, b), 1.0)

    def test_matches_pearson_of_ranks(self):
        rng = np.random.default_rng(9)
        w = rng.standard_normal((8, 3))
        a = interpret.label_similarity(w)
        b = interpret.label_similarity(w + rng.standard_normal((8, 3)))
        rows, cols = np.triu_indices(8, k=1)
        # Continuous values have no ties, so plain 0-based ranks are Spearman's ranks.
        ra = np.argsort(np.argsort(a[rows, cols])).astype(float)
        rb = np.argsort(np.argsort(b[rows, cols])).astype(float)
        expected = np.corrcoef(ra, rb)[0, 1]
        self.assertAlmostEqual(interpret.rank_correlation(a, b), expected, places=10)

    def test_constant_gives_nan(self):
        a = interpret.label_similarity(np.ones((4, 2)))
        self.assertTrue(np.isnan(interpret.rank_correlation(a, a)))


class EmbeddingsFromParamsTest(parameterized.TestCase):
    def test_reads_w_with_and_without_variables_wrapper(self):
        w = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        params = {"label_encoder": {"embeddings": w, "bias": np.zeros((2, 4))}, "decoder": {}}
        np.testing.assert_array_equal(interpret.label_embeddings_from_params(params), w)
        got = interpret.label_embeddings_from_params({"params": params})
        np.testing.assert_array_equal(got, w)

    def test_missing_raises(self):
        with self.assertRaisesRegex(KeyError, "label_encoder"):
            interpret.label_embeddings_from_params({"feature_encoder": {}})

    def test_real_model_tree(self):
        import jax

        from cgmvae_jax import models

        model = models.CGMVAE(
            num_labels=5,
            latent_dim=3,
            embedding_dim=4,
            feature_hidden=(6,),
            label_hidden=(6,),
            decoder_hidden=(6,),
        )
        x, y = np.zeros((2, 7), np.float32), np.ones((2, 5), np.float32)
        variables = model.init(jax.random.key(0), x, y, train=False)
        w = interpret.label_embeddings_from_params(variables["params"])
        self.assertEqual(w.shape, (5, 4))
        out = model.apply(variables, x, y, train=False)
        np.testing.assert_array_equal(w, np.asarray(out["label_embeddings"]))


def _write_metrics(path, epochs=4):
    with open(path, "w", encoding="utf-8") as f:
        for e in range(epochs):
            record = {
                "epoch": e,
                "step": 10 * (e + 1),
                "lr": 1e-3 / (e + 1),
                "train_loss": 5.0 - e,
                "train_bce": 2.0 - 0.1 * e,
                "train_kl": 1.0 / (e + 1),
                "train_contrastive": 3.0 - 0.5 * e,
                "train_grad_norm": 1.5,
                "val_example_f1": 0.3 + 0.05 * e,
                "val_macro_f1": 0.2 + 0.05 * e,
                "val_tuned_macro_f1": 0.25 + 0.05 * e,
                "val_hamming_accuracy": 0.8,
                "samples_per_sec": 1000.0,
            }
            f.write(json.dumps(record) + "\n")
        f.write('{"epoch": 4, "trunc')  # a torn last line is ignored


@absltest.skipUnless(_HAS_MPL, _NO_MPL)
class PlotTest(parameterized.TestCase):
    def _assert_png(self, path):
        self.assertTrue(os.path.exists(path), path)
        self.assertGreater(os.path.getsize(path), 5000)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), _PNG_MAGIC)

    @parameterized.named_parameters(("few_labels", 8), ("many_labels", 130))
    def test_similarity_heatmaps(self, num_labels):
        rng = np.random.default_rng(10)
        w, _ = _two_blocks(num_labels=num_labels, dim=8)
        y = rng.random((100, num_labels)) < 0.3
        names = [f"label_{i}" for i in range(num_labels)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sub", "sim.png")
            out = interpret.plot_similarity_heatmaps(
                interpret.label_similarity(w), interpret.cooccurrence(y), names, path
            )
            self.assertEqual(out, path)
            self._assert_png(path)

    def test_plots_leave_the_callers_backend_and_figures_alone(self):
        import matplotlib
        import matplotlib.pyplot as plt

        backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
        sim = interpret.label_similarity(np.eye(3))
        with tempfile.TemporaryDirectory() as tmp:
            interpret.plot_similarity_heatmaps(sim, sim, ["a", "b", "c"], f"{tmp}/s.png")
        self.assertEqual(matplotlib.get_backend(), backend)
        self.assertEqual(plt.get_fignums(), open_figures)  # nothing registered with pyplot

    def test_heatmap_rejects_wrong_names(self):
        sim = interpret.label_similarity(np.eye(3))
        with self.assertRaisesRegex(ValueError, "label names"):
            interpret.plot_similarity_heatmaps(sim, sim, ["a", "b"], "/tmp/never.png")

    def test_training_curves(self):
        with tempfile.TemporaryDirectory() as tmp:
            metrics_path = os.path.join(tmp, "metrics.jsonl")
            _write_metrics(metrics_path)
            self.assertLen(interpret.read_metrics(metrics_path), 4)
            path = interpret.plot_training_curves(metrics_path, os.path.join(tmp, "curves.png"))
            self._assert_png(path)

    def test_training_curves_empty_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            metrics_path = os.path.join(tmp, "metrics.jsonl")
            open(metrics_path, "w").close()
            with self.assertRaisesRegex(ValueError, "no epoch record"):
                interpret.plot_training_curves(metrics_path, os.path.join(tmp, "c.png"))


_smoke_config = helpers.smoke_config


@absltest.skipUnless(_HAS_MPL, _NO_MPL)
class VisualizeRunTest(absltest.TestCase):
    def test_visualize_a_trained_run(self):
        from cgmvae_jax import train

        with tempfile.TemporaryDirectory() as tmp:
            workdir = os.path.join(tmp, "run")
            train.train_and_evaluate(_smoke_config(num_epochs=2, num_seeds=2), workdir)
            summary = interpret.visualize_run(workdir, cosine=True)
            figures = os.path.join(workdir, "figures")
            self.assertEqual(
                summary["label_similarity_png"], os.path.join(figures, "label_similarity.png")
            )
            self.assertEqual(
                summary["training_curves_png"], os.path.join(figures, "training_curves.png")
            )
            for key in ("label_similarity_png", "training_curves_png"):
                with open(summary[key], "rb") as f:
                    self.assertEqual(f.read(8), _PNG_MAGIC)
            self.assertEqual(summary["num_labels"], 6)
            self.assertLen(summary["rank_correlation_per_seed"], 2)
            self.assertTrue(-1.0 <= summary["rank_correlation"] <= 1.0)

            # The learnt W is what the trainer saved as the best parameters.
            _, params, _, _, _ = train.load_best(workdir)
            w = interpret.label_embeddings_from_params(params)
            self.assertEqual(w.shape, (2, 6, 32))  # [S, L, E] of configs/smoke.py


class ImportTest(absltest.TestCase):
    def test_import_needs_only_numpy(self):
        code = (
            "import sys; import cgmvae_jax.interpret; "
            "heavy = [m for m in ('jax', 'flax', 'scipy', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_REPO
        )
        self.assertEqual(out.stdout.strip(), "")


if __name__ == "__main__":
    absltest.main()
