"""Tests of the npz reader (cgmvae_jax/data/npz.py) through `load_dataset`."""

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import data_testing

toy, save_raw_npz = data_testing.toy, data_testing.save_raw_npz


def _with(a, index, value, dtype=None):
    """A copy of `a` (as `dtype`) with `a[index] = value`."""
    a = np.array(a, dtype=dtype or a.dtype)
    a[index] = value
    return a


class NpzTest(data_testing.TmpDirTest):
    def test_minimal_npz_gets_default_names(self):
        x, y = toy()
        ds = data.load_dataset(save_raw_npz(self.path("m.npz"), X=x, Y=y))
        np.testing.assert_array_equal(ds.x, x)
        self.assertEqual(ds.label_names, ("label_0", "label_1", "label_2"))
        self.assertEqual(ds.feature_names[0], "feature_0")
        self.assertIsNone(ds.split)
        self.assertEqual((ds.name, ds.source), ("m", self.path("m.npz")))

    def test_names_and_split_are_kept(self):
        x, y = toy()
        split = np.r_[np.zeros(15), np.ones(3), np.full(2, 2)].astype(np.int8)
        path = save_raw_npz(
            self.path("n.npz"), X=x, Y=y, label_names=np.array(list("abc")), split=split
        )
        ds = data.load_dataset(path)
        self.assertEqual(ds.label_names, ("a", "b", "c"))
        np.testing.assert_array_equal(ds.split, split)

    # Each case: the arrays saved (from the clean toy x, y) and the expected message.
    @parameterized.named_parameters(
        dict(
            testcase_name="label_two",
            arrays=lambda x, y: dict(X=x, Y=_with(y, (3, 1), 2, np.int64)),
            pattern=r"bad\.npz: label value 2 at row 3, label column 1.*must be 0 or 1.*"
            r"Fix: binarise",
        ),
        dict(
            testcase_name="nan_feature",
            arrays=lambda x, y: dict(X=_with(x, (2, 4), np.nan), Y=y),
            pattern=r"bad\.npz: a missing value or NaN at row 2, feature column 4.*Fix: impute",
        ),
        dict(
            testcase_name="rows_differ",
            arrays=lambda x, y: dict(X=x, Y=y[:-1]),
            pattern=r"bad\.npz: X has 20 rows but Y has 19 rows",
        ),
        dict(
            testcase_name="no_y",
            arrays=lambda x, y: dict(X=x),
            pattern=r"bad\.npz: the npz has no array 'Y' \(it has: X\)",
        ),
        dict(
            testcase_name="one_dimensional_y",
            arrays=lambda x, y: dict(X=x, Y=y[:, 0]),
            pattern=r"bad\.npz: X must be 2-D \[n, F\] and Y 2-D \[n, L\].*Y\[:, None\]",
        ),
        dict(
            testcase_name="split_without_train_rows",
            arrays=lambda x, y: dict(X=x, Y=y, split=np.ones(len(x), np.int8)),
            pattern=r"bad\.npz: the predefined split has no training",
        ),
        dict(
            testcase_name="unknown_split_code",
            arrays=lambda x, y: dict(X=x, Y=y, split=_with(np.zeros(len(x), np.int8), 7, 5)),
            pattern=r"bad\.npz: split code 5 at row 7",
        ),
        dict(
            testcase_name="duplicate_label_names",
            arrays=lambda x, y: dict(X=x, Y=y, label_names=np.array(["a", "b", "a"])),
            pattern=r"bad\.npz: duplicate label name 'a' at label columns 0 and 2",
        ),
        dict(
            testcase_name="object_names",
            arrays=lambda x, y: dict(X=x, Y=y, label_names=np.array(["a", None, "c"], object)),
            pattern=r"bad\.npz: cannot read the npz file .*save names as str arrays",
        ),
        dict(
            testcase_name="num_labels_disagrees",
            arrays=lambda x, y: dict(X=x, Y=y),
            kwargs=dict(num_labels=4),
            pattern=r"bad\.npz: num_labels=4 was given but Y has 3 label columns",
        ),
    )
    def test_bad_npz(self, arrays, pattern, kwargs=None):
        path = save_raw_npz(self.path("bad.npz"), **arrays(*toy()))
        with self.assertRaisesRegex(ValueError, pattern):
            data.load_dataset(path, **(kwargs or {}))

    def test_truncated_npz(self):
        x, y = toy(n=200, f=50)
        path = save_raw_npz(self.path("t.npz"), X=x, Y=y)
        with open(path, "rb") as f:
            blob = f.read()
        with self.assertRaisesRegex(ValueError, r"t\.npz: cannot read the npz file .*truncated"):
            data.load_dataset(self.write("t.npz", blob[: len(blob) // 2]))

    @parameterized.named_parameters(("yeast", "yeast"), ("sider", "sider"), ("medical", "medical"))
    def test_save_npz_round_trip_of_shared_data(self, name):
        ds = data_testing.shared(name)
        back = self.load_quiet(data.save_npz(ds, self.path(f"{name}.npz")))
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        self.assertEqual((back.label_names, back.feature_names), (ds.label_names, ds.feature_names))
        if ds.split is None:
            self.assertIsNone(back.split)
        else:
            np.testing.assert_array_equal(back.split, ds.split)


if __name__ == "__main__":
    absltest.main()
