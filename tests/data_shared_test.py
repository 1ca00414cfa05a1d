"""Round trips of the shared data sets through every text format the loader reads.

The shared npz files are found by `tests.helpers.shared_data_dir()`; without them these tests
skip with `helpers.NO_SHARED_DATA`. Each round trip writes the data with the independent
writers of `tests.data_testing` and reads them back with `load_dataset`. The large sets
(reuters, delicious, bibtex) use a row subset unless CGMVAE_FULL_ROUNDTRIP=1.
"""

import os

import numpy as np
from absl.testing import absltest, parameterized

from tests import data_testing

# name: (n, F, L, {split code: rows} or None) from the shared datasets/README.md.
SHARED = {
    "yeast": (2417, 103, 14, {0: 1500, 1: 917}),
    "scene": (2407, 294, 6, {0: 1211, 1: 1196}),
    "emotions": (593, 72, 6, {0: 391, 1: 202}),
    "sider": (1427, 40, 27, None),
    "reuters": (10789, 7204, 90, {0: 7770, 1: 3019}),
    "delicious": (16105, 500, 983, {0: 12920, 1: 3185}),
    "bibtex": (7395, 1836, 159, {0: 4880, 1: 2515}),
    "enron": (1702, 1001, 53, {0: 1123, 1: 579}),
    "medical": (978, 1449, 45, {0: 333, 1: 645}),
}
LARGE = ("reuters", "delicious", "bibtex")
DENSE_ARFF = ("yeast", "emotions", "sider")


class SharedDatasetsTest(data_testing.TmpDirTest):
    @parameterized.named_parameters((n, n) for n in SHARED)
    def test_loads_with_published_shape(self, name):
        ds = data_testing.shared(name)
        n, f, num_labels, split = SHARED[name]
        self.assertEqual((ds.num_examples, ds.num_features, ds.num_labels), (n, f, num_labels))
        self.assertEqual((ds.x.dtype, ds.y.dtype), (np.float32, np.uint8))
        self.assertTrue(set(np.unique(ds.y)) <= {0, 1})
        self.assertLen(set(ds.label_names), num_labels)
        self.assertEqual(ds.name, name)
        if split is None:
            self.assertIsNone(ds.split)
        else:
            self.assertEqual(
                {
                    int(k): int(v)
                    for k, v in zip(*np.unique(ds.split, return_counts=True), strict=True)
                },
                split,
            )

    def _subset(self, ds):
        if ds.name in LARGE and not os.environ.get("CGMVAE_FULL_ROUNDTRIP"):
            rows = np.arange(0, ds.num_examples, max(1, ds.num_examples // 1500))
            return ds.x[rows], ds.y[rows]
        return ds.x, ds.y

    @parameterized.named_parameters((n, n) for n in SHARED)
    def test_round_trip_libsvm(self, name):
        ds = data_testing.shared(name)
        x, y = self._subset(ds)
        path = self.path(f"{name}.txt")
        data_testing.write_libsvm(path, x, y, header=True, base=0)
        back = self.load_quiet(path)
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)
        self.assertEqual(back.x.dtype, np.float32)

    @parameterized.named_parameters((n, n) for n in SHARED)
    def test_round_trip_sparse_arff(self, name):
        ds = data_testing.shared(name)
        x, y = self._subset(ds)
        labels = list(ds.label_names)
        if set(labels) & set(ds.feature_names):  # reuters: topic names are also words
            labels = [f"topic_{s}" for s in labels]
        data_testing.write_arff(
            self.path(f"{name}.arff"), x, y, ds.feature_names, labels, sparse=True
        )
        data_testing.write_xml(self.path(f"{name}.xml"), labels)
        back = self.load_quiet(self.path(f"{name}.arff"))
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)
        self.assertEqual(back.feature_names, ds.feature_names)
        self.assertEqual(back.label_names, tuple(labels))

    @parameterized.named_parameters((n, n) for n in DENSE_ARFF)
    def test_round_trip_dense_arff(self, name):
        ds = data_testing.shared(name)
        data_testing.write_arff(
            self.path("d.arff"), ds.x, ds.y, ds.feature_names, ds.label_names, sparse=False
        )
        back = self.load_quiet(self.path("d.arff"), num_labels=ds.num_labels)
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        self.assertEqual(back.label_names, ds.label_names)

    def _write_part(self, fmt, ds, part, rows):
        path = self.path(ds.name, f"{ds.name}-{part}.{fmt}")
        if fmt == "arff":
            x, y, names = ds.x[rows], ds.y[rows], (ds.feature_names, ds.label_names)
            data_testing.write_arff(path, x, y, *names, sparse=False)
            data_testing.write_xml(self.path(ds.name, f"{ds.name}.xml"), ds.label_names)
        else:
            data_testing.write_libsvm(path, ds.x[rows], ds.y[rows])

    @parameterized.named_parameters(
        ("arff_yeast", "arff", "yeast"), ("txt_emotions", "txt", "emotions")
    )
    def test_train_test_directory_reproduces_npz_and_split(self, fmt, name):
        ds = data_testing.shared(name)
        for code, part in ((0, "train"), (1, "test")):
            self._write_part(fmt, ds, part, ds.split == code)
        back = self.load_quiet(name, self.tmp)
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        np.testing.assert_array_equal(back.split, ds.split)
        self.assertEqual(back.num_labels, ds.num_labels)


if __name__ == "__main__":
    absltest.main()
