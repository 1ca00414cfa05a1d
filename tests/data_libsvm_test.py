"""Tests of the libsvm / Extreme Classification reader (cgmvae_jax/data/libsvm.py)."""

import numpy as np
from absl.testing import absltest, parameterized

from tests import data_testing

toy, write_libsvm = data_testing.toy, data_testing.write_libsvm


class LibsvmTest(data_testing.TmpDirTest):
    def test_one_based_without_header_and_rows_without_labels(self):
        path = self.write("s.svm", "0,2 1:0.5 3:2\n4:1.25  # comment\n\n1 2:-1\n")
        ds = self.load_quiet(path, num_labels=3, num_features=4)
        np.testing.assert_array_equal(
            ds.x, [[0.5, 0, 2, 0], [0, 0, 0, 1.25], [0] * 4, [0, -1, 0, 0]]
        )
        np.testing.assert_array_equal(ds.y, [[1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0]])
        self.assertEqual(ds.name, "s")

    def test_index_base_detection_and_override(self):
        x, y = toy()
        x[:, 0] = 0.0  # no index 0 in the file: the header makes it 0-based
        x[0, 1] = 3.0
        write_libsvm(self.path("h.txt"), x, y, header=True, base=0)
        np.testing.assert_array_equal(self.load_quiet(self.path("h.txt")).x, x)
        write_libsvm(self.path("n.txt"), x, y, header=False, base=0)
        ds = self.load_quiet(self.path("n.txt"), index_base=0, num_features=5)
        np.testing.assert_array_equal(ds.x, x)
        write_libsvm(self.path("one.txt"), x, y, header=True, base=1)
        ds = self.load_quiet(self.path("one.txt"), index_base=1)  # no index F: needs the keyword
        np.testing.assert_array_equal(ds.x, x)

    def test_one_based_detected_from_index_equal_to_f(self):
        x, y = toy()
        x[:, 0] = 0.0
        x[0, -1] = 7.0  # index F appears
        write_libsvm(self.path("one.txt"), x, y, header=True, base=1)
        np.testing.assert_array_equal(self.load_quiet(self.path("one.txt")).x, x)

    def test_train_val_test_directory(self):
        x, y = toy(n=30)
        for part, rows in (
            ("train", slice(0, 20)),
            ("val", slice(20, 25)),
            ("test", slice(25, 30)),
        ):
            write_libsvm(self.path("d", f"set_{part}.txt"), x[rows], y[rows])
        ds = self.load_quiet(self.path("d"))
        self.assertEqual(ds.split.tolist(), [0] * 20 + [2] * 5 + [1] * 5)
        np.testing.assert_array_equal(ds.x, x)
        self.assertEqual(ds.name, "set")

    # (name, file text, keywords, expected message after "e.txt: ").
    @parameterized.named_parameters(
        (
            "inf_value",
            "2 3 2\n0 0:1 1:2\n1 2:inf\n",
            {},
            r"line 3 \(row 1\): feature 2 has value inf",
        ),
        (
            "label_beyond_header",
            "2 3 2\n0 0:1\n0,5 1:1\n",
            {},
            r"line 3 \(row 1\): label 5 is outside 0\.\.1 \(2 labels from the header\)",
        ),
        (
            "index_beyond_header",
            "2 3 2\n0 0:1\n1 0:1 7:2\n",
            {},
            r"line 3 \(row 1\): feature index 7 is outside 0\.\.2",
        ),
        ("garbage_token", "0 1:1\n1 2-3\n", {}, r"line 2 \(row 1\): cannot parse feature '2-3'"),
        (
            "label_not_a_number",
            "1 2 2\nx 0:1\n",
            {},
            r"line 2 \(row 0\): label 'x' is not a whole number",
        ),
        (
            "feature_twice",
            "1 3 2\n0 1:1 1:2\n",
            {},
            r"line 2 \(row 0\): feature index 1 appears twice in the row",
        ),
        (
            "truncated",
            "3 2 2\n0 0:1\n1 1:1\n",
            {},
            r"the header says 3 rows but the file has 2.*truncated",
        ),
        (
            "header_vs_num_labels",
            "1 2 2\n0 0:1\n",
            {"num_labels": 3},
            r"the header says 2 labels but num_labels=3",
        ),
        (
            "no_label_count",
            "0:1\n1:2\n",
            {},
            r"no row has a label and neither a header nor num_labels",
        ),
        ("empty_file", "", {}, r"no rows \(the file is empty or truncated\)"),
    )
    def test_bad_file(self, text, kwargs, pattern):
        self.assert_load_error({"e.txt": text}, r"e\.txt: " + pattern, **kwargs)

    # (name, {part file: text} in directory d/, expected message).
    @parameterized.named_parameters(
        (
            "feature_counts_differ",
            {"s_train.txt": "1 5 3\n0 0:1\n", "s_test.txt": "1 4 3\n0 0:1\n"},
            r"s_test\.txt has 4 features \(header\) but .*s_train\.txt has 5",
        ),
        (
            "empty_test_part",
            {"s_train.txt": "1 5 3\n0 0:1\n", "s_test.txt": "0 5 3\n"},
            r"s_test\.txt: the test split is empty",
        ),
        (
            "two_train_files",
            {"s_train.txt": "0 0:1\n", "s-train.txt": "0 0:1\n", "s_test.txt": "0 0:1\n"},
            r"d: two train files for the same data set: s-train\.txt and s_train\.txt",
        ),
    )
    def test_bad_train_test_directory(self, parts, pattern):
        self.assert_load_error({f"d/{k}": v for k, v in parts.items()}, pattern, load="d")


if __name__ == "__main__":
    absltest.main()
