"""Tests of the MPVAE `.npy` layout reader (cgmvae_jax/data/mpvae.py) through `load_dataset`."""

import os

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import data_testing

toy = data_testing.toy


class MpvaeTest(data_testing.TmpDirTest):
    def _write(self, name, x, y, meta=0, idx=None, labels_file=False):
        """Writes NAME_data.npy ([meta | y | x]), the index files and optionally label names."""
        rng = np.random.default_rng(1)
        rows = np.concatenate([rng.normal(size=(len(x), meta)), y, x], axis=1)
        directory = self.path(name, "")
        np.save(os.path.join(directory, f"{name}_data.npy"), rows)
        for part, ids in (idx or {}).items():
            np.save(os.path.join(directory, f"{name}_{part}_idx.npy"), np.asarray(ids))
        if labels_file:
            with open(os.path.join(directory, f"{name}_labels.txt"), "w") as f:
                f.write("\n".join(f"tag{j}" for j in range(y.shape[1])) + "\n")
        return directory

    def test_meta_offset_num_labels_and_split_used_as_is(self):
        x, y = toy(n=12, f=4, num_labels=3)
        idx = {"train": [0, 2, 4, 6, 8, 10], "val": [1, 3], "test": [5, 7, 9, 11]}
        self._write("toy", x, y, meta=2, idx=idx)
        ds = self.load_quiet("toy", self.tmp, meta_offset=2, num_labels=3)
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, y)
        expected = np.full(12, 0, np.int8)
        expected[[1, 3]] = 2
        expected[[5, 7, 9, 11]] = 1
        np.testing.assert_array_equal(ds.split, expected)
        self.assertEqual((ds.name, ds.source), ("toy", self.path("toy")))
        splits = data.make_splits(ds, seed=0, standardize=False)
        np.testing.assert_array_equal(splits.val_index, [1, 3])  # used as is
        np.testing.assert_array_equal(splits.test_index, [5, 7, 9, 11])
        self.assertStartsWith(splits.description, "predefined train/validation/test")

    def test_label_count_from_labels_file_and_known_name(self):
        x, y = toy(n=8, f=3, num_labels=38)
        self._write("mirflickr", x, y, idx={"train": [0, 1, 2, 3, 4], "test": [5, 6]})
        ds = self.load_quiet("mirflickr", self.tmp)  # L from KNOWN_LABEL_COUNTS
        self.assertEqual(ds.num_labels, 38)
        self.assertEqual(ds.split.tolist(), [0, 0, 0, 0, 0, 1, 1, -1])
        x, y = toy(n=8, f=3, num_labels=2)
        self._write("other", x, y, idx={"train": range(6), "test": [6, 7]}, labels_file=True)
        ds = self.load_quiet(self.path("other", "other_data.npy"))
        self.assertEqual(ds.label_names, ("tag0", "tag1"))
        np.testing.assert_array_equal(ds.x, x)

    def test_rows_in_no_split_warn(self):
        x, y = toy(n=8)
        self._write("t", x, y, idx={"train": range(5), "test": [5]})
        with self.assertWarnsRegex(data.UnassignedRowsWarning, r"2 of 8 rows are in no"):
            data.load_dataset(self.path("t"), num_labels=3)

    # Each case: the index files of a 6-row data set (labels first, L = 3), the keywords and
    # the expected message.
    @parameterized.named_parameters(
        dict(
            testcase_name="index_out_of_range",
            idx=dict(train=[0, 1, 2], test=[3, 9]),
            pattern=r"p_test_idx\.npy: index 9 at position 1 is out of range for "
            r".*p_data\.npy with 6 rows",
        ),
        dict(
            testcase_name="index_files_overlap",
            idx=dict(train=[0, 1, 2, 3], test=[3, 4], val=[5]),
            pattern=r"p_test_idx\.npy and .*p_train_idx\.npy overlap: 1 rows .*\(first: row 3\)",
        ),
        dict(
            testcase_name="index_listed_twice",
            idx=dict(train=[0, 1, 1], test=[3]),
            pattern=r"p_train_idx\.npy: row 1 is listed twice",
        ),
        dict(
            testcase_name="empty_index_file",
            idx=dict(train=[0, 1, 2], test=[3], val=np.zeros(0, np.int64)),
            pattern=r"p_val_idx\.npy: the validation split is empty",
        ),
        dict(
            testcase_name="fractional_index",
            idx=dict(train=[0.0, 1.5], test=[3]),
            pattern=r"p_train_idx\.npy: index 1\.5 at position 1 is not a whole number",
        ),
        dict(
            testcase_name="missing_test_index_file",
            idx=dict(train=[0, 1, 2]),
            pattern=r"p_data\.npy: missing index file\(s\) .*p_test_idx\.npy",
        ),
        dict(
            testcase_name="label_count_unknown",
            idx=dict(train=[0, 1, 2], test=[3]),
            kwargs={},
            pattern=r"p_data\.npy: cannot tell how many of the 8 columns .* are labels\. "
            r"Fix: pass num_labels=L",
        ),
        dict(
            testcase_name="no_feature_left",
            idx=dict(train=[0, 1, 2], test=[3]),
            kwargs=dict(num_labels=3, meta_offset=5),
            pattern=r"p_data\.npy: rows have 8 columns, too few for meta_offset=5 \+ 3 labels",
        ),
    )
    def test_bad_layout(self, idx, pattern, kwargs=None):
        x, y = toy(n=6)
        directory = self._write("p", x, y, idx=idx)
        kwargs = dict(num_labels=3) if kwargs is None else kwargs
        with self.assertRaisesRegex(ValueError, pattern):
            data.load_dataset(directory, **kwargs)

    def test_label_not_zero_or_one_names_the_file_column(self):
        x, y = toy(n=6)
        y = y.astype(np.float64)
        y[4, 2] = 0.5
        directory = self._write("m", x, y, meta=1, idx=dict(train=range(4), test=[4, 5]))
        with self.assertRaisesRegex(
            ValueError, r"m_data\.npy: label value 0\.5 at row 4, label column 2 \(file column 3\)"
        ):
            data.load_dataset(directory, meta_offset=1, num_labels=3)

    def test_truncated_npy(self):
        x, y = toy(n=6)
        directory = self._write("p", x, y, idx=dict(train=[0, 1, 2], test=[3]))
        with open(directory + "p_data.npy", "rb") as f:
            blob = f.read()
        self.write("p/p_data.npy", blob[:-40])
        with self.assertRaisesRegex(ValueError, r"p_data\.npy: cannot read the \.npy file.*trunc"):
            data.load_dataset(directory, num_labels=3)


if __name__ == "__main__":
    absltest.main()
