"""Tests of train/validation/test splits (cgmvae_jax/data/splits.py)."""

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import data_testing

toy = data_testing.toy


class SplitsTest(parameterized.TestCase):
    def _dataset(self, n=200, split=None):
        x, y = toy(n=n, f=6, num_labels=4, seed=3)
        x[:, 5] = 2.0  # a constant feature
        return data.Dataset(x, y, tuple("abcd"), tuple(f"f{j}" for j in range(6)), split, "s", "s")

    def _check_partition(self, splits, n):
        parts = [splits.train_index, splits.val_index, splits.test_index]
        allrows = np.concatenate(parts)
        self.assertLen(np.unique(allrows), len(allrows))  # disjoint
        self.assertTrue(all(np.all(np.diff(p) > 0) for p in parts))
        self.assertTrue(np.all(allrows < n))

    def test_random_split_80_10_10(self):
        ds = self._dataset()
        s = data.make_splits(ds, seed=4, standardize=False)
        self.assertEqual((len(s.train_index), len(s.val_index), len(s.test_index)), (160, 20, 20))
        self._check_partition(s, 200)
        np.testing.assert_array_equal(s.val_x, ds.x[s.val_index])
        np.testing.assert_array_equal(s.test_y, ds.y[s.test_index])

    def test_seeded_determinism(self):
        ds = self._dataset()
        a, b = data.make_splits(ds, seed=7), data.make_splits(ds, seed=7)
        c = data.make_splits(ds, seed=8)
        for name in ("train_index", "val_index", "test_index", "train_x", "val_y"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        self.assertFalse(np.array_equal(a.test_index, c.test_index))

    def test_predefined_train_test_respected_and_validation_carved(self):
        split = np.zeros(200, np.int8)
        split[150:] = 1
        s = data.make_splits(self._dataset(split=split), seed=1)
        np.testing.assert_array_equal(s.test_index, np.arange(150, 200))
        self.assertLen(s.val_index, 15)  # 10% of the 150 train rows
        self.assertTrue(np.all(s.val_index < 150))
        np.testing.assert_array_equal(
            np.sort(np.concatenate([s.train_index, s.val_index])), np.arange(150)
        )
        self._check_partition(s, 200)

    def test_missing_test_part_is_carved(self):
        split = np.zeros(100, np.int8)
        split[90:] = 2
        s = data.make_splits(self._dataset(n=100, split=split), seed=1, test_fraction=0.2)
        np.testing.assert_array_equal(s.val_index, np.arange(90, 100))
        self.assertLen(s.test_index, 18)
        self.assertLen(s.train_index, 72)

    def test_unused_rows_left_out(self):
        split = np.array([0] * 80 + [2] * 10 + [1] * 5 + [-1] * 5, np.int8)
        s = data.make_splits(self._dataset(n=100, split=split), seed=1)
        self.assertNotIn(97, np.concatenate([s.train_index, s.val_index, s.test_index]))
        self.assertIn("5 rows in no split left out", s.description)

    def test_train_fraction_subsamples_train_only(self):
        ds = self._dataset()
        full = data.make_splits(ds, seed=2)
        half = data.make_splits(ds, seed=2, train_fraction=0.5)
        quarter = data.make_splits(ds, seed=2, train_fraction=0.25)
        self.assertLen(half.train_index, 80)
        self.assertLen(quarter.train_index, 40)
        np.testing.assert_array_equal(half.val_index, full.val_index)
        np.testing.assert_array_equal(half.test_index, full.test_index)
        self.assertTrue(set(quarter.train_index) <= set(half.train_index) <= set(full.train_index))
        other = data.make_splits(ds, seed=3, train_fraction=0.5)
        self.assertFalse(np.array_equal(other.train_index, half.train_index))

    def test_standardisation_uses_train_statistics(self):
        ds = self._dataset()
        s = data.make_splits(ds, seed=0)
        raw = ds.x[s.train_index].astype(np.float64)
        mean, std = raw.mean(0), raw.std(0)
        std[std == 0] = 1.0
        np.testing.assert_allclose(s.feature_mean, mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(s.feature_std, std, rtol=1e-6)
        np.testing.assert_allclose(s.train_x.mean(0), 0.0, atol=1e-5)
        np.testing.assert_allclose(s.train_x[:, :5].std(0), 1.0, rtol=1e-5)
        expected_val = (ds.x[s.val_index].astype(np.float64) - mean) / std
        np.testing.assert_allclose(s.val_x, expected_val, rtol=1e-5, atol=1e-5)
        self.assertTrue(np.all(np.isfinite(s.test_x)))
        self.assertEqual(s.feature_std[5], 1.0)  # constant feature: std 0 -> 1
        self.assertEqual(s.train_x.dtype, np.float32)
        np.testing.assert_array_equal(ds.x[:, 5], 2.0)  # the dataset is not modified

    def test_no_standardisation(self):
        ds = self._dataset()
        s = data.make_splits(ds, seed=0, standardize=False)
        self.assertIsNone(s.feature_mean)
        np.testing.assert_array_equal(s.train_x, ds.x[s.train_index])

    @parameterized.parameters(
        dict(val_fraction=0.0),
        dict(test_fraction=1.0),
        dict(train_fraction=0.0),
        dict(train_fraction=1.5),
        dict(val_fraction=0.5, test_fraction=0.5),
    )
    def test_bad_fractions(self, **kwargs):
        with self.assertRaisesRegex(ValueError, r"fraction"):
            data.make_splits(self._dataset(), seed=0, **kwargs)

    def test_empty_split_from_fractions(self):
        x, y = toy(n=8)
        ds = data.Dataset(x, y, ("a", "b", "c"), tuple("vwxyz"), None, "tiny", "tiny.npz")
        with self.assertRaisesRegex(
            ValueError,
            r"tiny\.npz: the validation split is empty .*n = 8\)\. Fix: raise val_fraction",
        ):
            data.make_splits(ds, seed=0, val_fraction=0.05)

    def test_yeast_validation_carved_from_mulan_train_part(self):
        splits = data.make_splits(data_testing.shared("yeast"), seed=1)
        self.assertEqual(
            (len(splits.train_index), len(splits.val_index), len(splits.test_index)),
            (1350, 150, 917),
        )
        self.assertIn(
            "validation = 10% of the predefined train part (150 rows, seed 1)", splits.description
        )


if __name__ == "__main__":
    absltest.main()
