"""Tests of the data-quality warnings (cgmvae_jax/data/validation.py); the errors are tested
with each reader."""

import warnings

import numpy as np
from absl.testing import absltest

from cgmvae_jax import data
from cgmvae_jax.data import validation
from tests import data_testing

toy, save_raw_npz = data_testing.toy, data_testing.save_raw_npz


class WarningsTest(data_testing.TmpDirTest):
    def _load(self, x, y):
        return data.load_dataset(save_raw_npz(self.path("w.npz"), X=x, Y=y))

    def test_clean_data_gives_no_warning(self):
        x, y = toy()
        with warnings.catch_warnings():
            warnings.simplefilter("error", data.DataWarning)
            self._load(x, y)

    def test_rows_without_labels(self):
        x, y = toy()
        y[[4, 9]] = 0
        with self.assertWarnsRegex(
            data.NoLabelRowsWarning,
            r"w\.npz: 2 of 20 rows have no "
            r"positive label \(rows 4, 9\)",
        ):
            ds = self._load(x, y)
        np.testing.assert_array_equal(ds.y, y)  # kept unchanged

    def test_constant_features(self):
        x, y = toy()
        x[:, 3] = 7.0
        with self.assertWarnsRegex(
            data.ConstantFeaturesWarning,
            r"1 of 5 features are constant "
            r"\(columns 3 \('feature_3'\)\)",
        ):
            self._load(x, y)

    def test_duplicate_rows(self):
        x, y = toy()
        x[12], y[12] = x[5], y[5]
        with self.assertWarnsRegex(
            data.DuplicateRowsWarning,
            r"1 rows repeat an earlier row "
            r"exactly.*12 = 5",
        ):
            ds = self._load(x, y)
        self.assertEqual(ds.num_examples, 20)

    def test_delicious_rows_without_labels_warn(self):
        ds = data_testing.shared("delicious")
        with self.assertWarnsRegex(data.NoLabelRowsWarning, r"14 of 16105 rows have no positive"):
            validation.quality_warnings(ds)

    def test_warnings_can_be_escalated_to_errors(self):
        x, y = toy()
        y[4] = 0
        with warnings.catch_warnings():
            warnings.simplefilter("error", data.DataWarning)
            with self.assertRaises(data.NoLabelRowsWarning):
                self._load(x, y)


if __name__ == "__main__":
    absltest.main()
