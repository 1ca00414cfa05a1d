"""Tests of the data package as a whole and of the in-memory Dataset (cgmvae_jax/data/dataset.py).

Each module of the data layer has its own test file: data_<module>_test.py (npz, mpvae, arff,
libsvm, delimited, formats, loader, splits, synthetic, validation) and data_shared_test.py for
round trips of the shared data sets.
"""

import os
import subprocess
import sys

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import data_testing, helpers

toy = data_testing.toy


class PackageTest(parameterized.TestCase):
    def test_public_names(self):
        for name in data.__all__:
            self.assertTrue(hasattr(data, name), name)
        self.assertEqual(data.FORMATS, ("auto", "npz", "mpvae", "arff", "libsvm", "csv"))

    def test_data_layer_does_not_import_jax(self):
        code = "import sys, cgmvae_jax.data; assert 'jax' not in sys.modules, 'jax imported'"
        env = dict(os.environ, PYTHONPATH=helpers.REPO)
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)


class DatasetTest(data_testing.TmpDirTest):
    def test_summary(self):
        x, y = toy()
        y[0] = 0
        x[:, 2] = 1.0
        ds = data.Dataset(x, y, tuple("abc"), tuple("vwxyz"), None, "toy", "toy")
        s = data.summarize(ds)
        self.assertEqual((s["n"], s["F"], s["L"]), (20, 5, 3))
        self.assertAlmostEqual(s["cardinality"], y.sum() / 20)
        self.assertEqual((s["rows_without_labels"], s["constant_features"]), (1, 1))
        self.assertIn("| toy | 20 | 5 | 3 |", data.summary_table([ds]))

    @parameterized.named_parameters(
        dict(
            testcase_name="float64_features",
            change=dict(x=np.zeros((20, 5))),
            pattern=r"toy\.npz: Dataset\.x must be a float32 \[n, F\] array, got float64",
        ),
        dict(
            testcase_name="rows_differ",
            change=dict(y=np.zeros((19, 3), np.uint8)),
            pattern=r"toy\.npz: features have 20 rows but labels have 19",
        ),
        dict(
            testcase_name="label_names_count",
            change=dict(label_names=("a", "b")),
            pattern=r"toy\.npz: 2 label names for 3 label columns",
        ),
        dict(
            testcase_name="split_dtype",
            change=dict(split=np.zeros(20, np.int64)),
            pattern=r"toy\.npz: Dataset\.split must be an int8 \[n\] array or None",
        ),
    )
    def test_inconsistent_dataset_is_refused(self, change, pattern):
        x, y = toy()
        fields = dict(x=x, y=y, label_names=tuple("abc"), feature_names=tuple("vwxyz"), split=None)
        fields.update(change)
        with self.assertRaisesRegex(ValueError, pattern):
            data.Dataset(**fields, name="toy", source="toy.npz")

    def test_save_npz_replaces_the_file_whole(self):
        x, y = toy()
        ds = data.Dataset(x, y, tuple("abc"), tuple("vwxyz"), None, "toy", "toy")
        path = self.write("out.npz", b"old contents")
        self.assertEqual(data.save_npz(ds, path), path)
        back = data.load_dataset(path)
        np.testing.assert_array_equal(back.x, x)
        self.assertEqual(back.feature_names, tuple("vwxyz"))
        self.assertEqual(os.listdir(self.tmp), ["out.npz"])  # no temporary file left


if __name__ == "__main__":
    absltest.main()
