"""Tests of the built-in synthetic data set (cgmvae_jax/data/synthetic.py)."""

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from cgmvae_jax.data import synthetic


class SyntheticTest(parameterized.TestCase):
    @parameterized.parameters((100, 8, 5), (300, 64, 12), (50, 3, 1))
    def test_controllable_sizes(self, n, f, num_labels):
        ds = data.synthetic_dataset(n, f, num_labels, seed=0)
        self.assertEqual(ds.x.shape, (n, f))
        self.assertEqual(ds.y.shape, (n, num_labels))
        self.assertEqual((ds.x.dtype, ds.y.dtype), (np.float32, np.uint8))
        self.assertTrue(np.all(ds.y.sum(1) >= 1))
        self.assertIsNone(ds.split)
        self.assertEqual(ds.source, "synthetic")

    def test_deterministic_for_a_seed(self):
        a, b = data.synthetic_dataset(seed=3), data.synthetic_dataset(seed=3)
        c = data.synthetic_dataset(seed=4)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        self.assertFalse(np.array_equal(a.y, c.y))

    def test_labels_co_occur_within_clusters(self):
        ds = data.synthetic_dataset(4000, 16, 12, seed=0)
        cluster = synthetic.label_clusters(12)
        y = ds.y.astype(np.float64)
        cond = (y.T @ y) / y.sum(0)[:, None]  # [L, L] P(y_j = 1 | y_i = 1)
        same = cluster[:, None] == cluster[None, :]
        off_diag = ~np.eye(12, dtype=bool)
        within = cond[same & off_diag].mean()
        across = cond[~same].mean()
        self.assertGreater(within, 2 * across)
        self.assertGreater(within, 0.4)

    def test_features_predict_labels(self):
        ds = data.synthetic_dataset(2000, 32, 8, seed=1)
        x = np.c_[ds.x, np.ones(len(ds.x))].astype(np.float64)
        coef, *_ = np.linalg.lstsq(x[:1500], ds.y[:1500].astype(np.float64), rcond=None)
        pred = x[1500:] @ coef > 0.5
        accuracy = (pred == ds.y[1500:]).mean()
        majority = max(ds.y[1500:].mean(), 1 - ds.y[1500:].mean())
        self.assertGreater(accuracy, majority + 0.05)

    def test_bad_sizes(self):
        with self.assertRaisesRegex(ValueError, r"num_labels=0 must be >= 1"):
            data.synthetic_dataset(10, 3, 0)


if __name__ == "__main__":
    absltest.main()
