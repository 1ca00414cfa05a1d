"""Tests of format detection and dispatch (cgmvae_jax/data/formats.py)."""

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import data_testing

toy = data_testing.toy


class FormatsTest(data_testing.TmpDirTest):
    def test_detect_format_from_content(self):
        x, y = toy()
        data_testing.save_raw_npz(self.path("a.bin"), X=x, Y=y)
        data_testing.write_arff(self.path("b.dat"), x, y, list("vwxyz"), list("ABC"), sparse=False)
        data_testing.write_libsvm(self.path("c.dat"), x, y)
        self.assertEqual(data.detect_format(self.path("a.bin")), "npz")
        self.assertEqual(data.detect_format(self.path("b.dat")), "arff")
        self.assertEqual(data.detect_format(self.path("c.dat")), "libsvm")
        ds = self.load_quiet(self.path("b.dat"), num_labels=3)
        np.testing.assert_array_equal(ds.y, y)

    @parameterized.parameters(
        ("a.npz", "npz"),
        ("a_data.npy", "mpvae"),
        ("a.arff", "arff"),
        ("a.svm", "libsvm"),
        ("a.csv", "csv"),
        ("a.tsv.gz", "csv"),
    )
    def test_detect_format_from_extension(self, filename, fmt):
        self.assertEqual(data.detect_format(self.write(filename, "")), fmt)

    def test_explicit_format_overrides_extension(self):
        x, y = toy()
        data_testing.write_libsvm(self.path("c.arff"), x, y)
        ds = self.load_quiet(self.path("c.arff"), format="libsvm")
        np.testing.assert_array_equal(ds.x, x)

    def test_directory_with_one_data_file(self):
        x, y = toy()
        data_testing.save_raw_npz(self.path("set", "anything.npz"), X=x, Y=y)
        ds = self.load_quiet("set", self.tmp)
        np.testing.assert_array_equal(ds.y, y)
        self.assertEqual(ds.name, "set")

    @parameterized.named_parameters(
        dict(
            testcase_name="unknown_content",
            files={"table.dat": "a;b;c\n1;2;3\n"},
            kwargs={},
            pattern=r"table\.dat: unknown data format .*Supported: .*Fix: pass format=",
        ),
        dict(
            testcase_name="unknown_format_name",
            files={"a.npz": "x"},
            kwargs=dict(format="excel"),
            pattern=r"a\.npz: unknown data format 'excel'. Use one of auto, npz, mpvae, arff, "
            r"libsvm, csv",
        ),
        dict(
            testcase_name="archive",
            files={"a.zip": b"PK\x03\x04"},
            kwargs={},
            pattern=r"a\.zip: unknown data format: this is a compressed archive. Fix: unpack",
        ),
        dict(
            testcase_name="directory_without_data",
            files={"d/readme.md": "hello"},
            load="d",
            kwargs={},
            pattern=r"d: unknown data format: the directory holds no NAME_data\.npy",
        ),
        dict(
            testcase_name="several_train_test_sets",
            files={
                "d/a_train.txt": "0 0:1\n",
                "d/a_test.txt": "0 0:1\n",
                "d/b_train.txt": "0 0:1\n",
                "d/b_test.txt": "0 0:1\n",
            },
            load="d",
            kwargs={},
            pattern=r"d: several train/test sets \(a \(libsvm\), b \(libsvm\)\)",
        ),
    )
    def test_bad_path(self, files, kwargs, pattern, load=None):
        self.assert_load_error(files, pattern, load=load, **kwargs)

    def test_name_picks_one_of_several_train_test_sets(self):
        for stem in ("a", "b"):
            for part in ("train", "test"):
                self.write(f"b/{stem}_{part}.txt", f"1 2 2\n{'0' if stem == 'a' else '1'} 0:1\n")
        ds = self.load_quiet("b", self.tmp)  # the directory b/ holds a_* and b_*: name b wins
        np.testing.assert_array_equal(ds.y, [[0, 1], [0, 1]])


if __name__ == "__main__":
    absltest.main()
