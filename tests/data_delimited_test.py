"""Tests of the CSV/TSV reader (cgmvae_jax/data/delimited.py) through `load_dataset`."""

import gzip

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import data_testing

TABLE = (
    "f_a,f_b,tag_x,tag_y,split\n"
    "1.5,-2,0,1,train\n"
    "0,3e2,1,1,test\n"
    "\n"  # empty lines are skipped
    "-0.25,7,1,0,val\n"
    "4,1,0,1,train\n"
)
X = np.array([[1.5, -2], [0, 300], [-0.25, 7], [4, 1]], np.float32)
Y = np.array([[0, 1], [1, 1], [1, 0], [0, 1]], np.uint8)


class DelimitedTest(data_testing.TmpDirTest):
    def test_label_prefix_and_split_column(self):
        ds = self.load_quiet(self.write("t.csv", TABLE), label_prefix="tag_")
        np.testing.assert_array_equal(ds.x, X)
        np.testing.assert_array_equal(ds.y, Y)
        np.testing.assert_array_equal(ds.split, [0, 1, 2, 0])
        self.assertEqual(ds.label_names, ("tag_x", "tag_y"))
        self.assertEqual(ds.feature_names, ("f_a", "f_b"))
        self.assertEqual((ds.name, ds.x.dtype, ds.y.dtype), ("t", np.float32, np.uint8))

    @parameterized.named_parameters(
        ("end", "a,b,L1,L2\n1,2,0,1\n3,4,1,0\n", "end", ("L1", "L2")),
        ("start", "L1,L2,a,b\n0,1,1,2\n1,0,3,4\n", "start", ("L1", "L2")),
    )
    def test_num_labels_and_label_location(self, text, location, labels):
        ds = self.load_quiet(self.write("n.csv", text), num_labels=2, label_location=location)
        self.assertEqual(ds.label_names, labels)
        np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4]])
        np.testing.assert_array_equal(ds.y, [[0, 1], [1, 0]])
        self.assertIsNone(ds.split)

    @parameterized.named_parameters(
        ("tsv", "t.tsv", {}),
        ("tab_sniffed_with_format", "t.dat", {"format": "csv"}),
        ("tsv_alias", "t.table", {"format": "tsv"}),
    )
    def test_tab_separated(self, filename, kwargs):
        path = self.write(filename, TABLE.replace(",", "\t"))
        ds = self.load_quiet(path, label_prefix="tag_", **kwargs)
        np.testing.assert_array_equal(ds.x, X)
        np.testing.assert_array_equal(ds.y, Y)

    def test_gzip_bom_crlf_quotes_and_numeric_split_codes(self):
        text = '\ufeff"f,a",f_b,tag_x,tag_y,split\r\n1.5,-2,0,1,0\r\n0,3e2,1,1,1\r\n'
        path = self.path("q.csv.gz")
        with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
            f.write(text)
        ds = self.load_quiet(path, label_prefix="tag_")
        self.assertEqual(ds.feature_names, ("f,a", "f_b"))
        np.testing.assert_array_equal(ds.x, X[:2])
        np.testing.assert_array_equal(ds.split, [0, 1])
        self.assertEqual(ds.name, "q")

    def test_found_by_name_in_data_dir(self):
        self.write("mine.csv", TABLE)
        ds = self.load_quiet("mine", self.tmp, label_prefix="tag_")
        self.assertEqual((ds.name, ds.source), ("mine", self.path("mine.csv")))

    def test_train_test_part_files(self):
        header, *rows = [line for line in TABLE.split("\n") if line]
        no_split = [",".join(r.split(",")[:4]) for r in (header, *rows)]
        self.write("d/set_train.csv", "\n".join([no_split[0], *no_split[1:3]]) + "\n")
        self.write("d/set_test.csv", "\n".join([no_split[0], *no_split[3:]]) + "\n")
        ds = self.load_quiet(self.path("d"), label_prefix="tag_")
        np.testing.assert_array_equal(ds.split, [0, 0, 1, 1])
        np.testing.assert_array_equal(ds.x, X)
        self.assertEqual(ds.name, "set")

    def test_shared_yeast_round_trip(self):
        ds = data_testing.shared("yeast")
        path = self.path("yeast.csv")
        labels = [f"label:{n}" for n in ds.label_names]
        data_testing.write_csv(path, ds.x, ds.y, ds.feature_names, labels, split=ds.split)
        back = self.load_quiet(path, label_prefix="label:")
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        np.testing.assert_array_equal(back.split, ds.split)
        self.assertEqual(back.feature_names, ds.feature_names)

    # One case per bad input: the file's text, the keywords and the expected message, which
    # names the file, the 1-based line and the column (position and header name).
    @parameterized.named_parameters(
        dict(
            testcase_name="text_feature",
            text="a,b,L\n1,2,0\n3,x,1\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 3, column 2 \('b'\): cell 'x' is not a number.*drop or encode",
        ),
        dict(
            testcase_name="empty_cell",
            text="a,b,L\n1,,0\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 2, column 2 \('b'\): cell '' is empty \(a missing value\)",
        ),
        dict(
            testcase_name="label_two",
            text="a,L\n1,0\n2,2\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 3, column 2 \('L'\): label value '2' is not 0 or 1",
        ),
        dict(
            testcase_name="label_nan",
            text="L,a\nnan,1\n",
            kwargs=dict(num_labels=1, label_location="start"),
            pattern=r"e\.csv: line 2, column 1 \('L'\): label value 'nan' is not 0 or 1",
        ),
        dict(
            testcase_name="nan_feature",
            text="a,b,L\n1,2,0\n1,NaN,0\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 3, column 2 \('b'\): feature value 'NaN' is NaN, infinite",
        ),
        dict(
            testcase_name="inf_feature",
            text="a,L\n-inf,1\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 2, column 1 \('a'\): feature value '-inf'.*must be finite",
        ),
        dict(
            testcase_name="beyond_float32",
            text="a,L\n1,1\n1e39,0\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 3, column 1 \('a'\): feature value '1e39'.*float32 range",
        ),
        dict(
            testcase_name="ragged_row",
            text="a,b,L\n1,2,0\n\n1,2\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 4: 2 cells but the header has 3 columns \(a ragged row\)",
        ),
        dict(
            testcase_name="no_label_columns",
            text="a,b\n1,2\n",
            kwargs={},
            pattern=r"e\.csv: no label columns selected\. Fix: pass label_prefix=P",
        ),
        dict(
            testcase_name="prefix_matches_nothing",
            text="a,b\n1,2\n",
            kwargs=dict(label_prefix="tag_"),
            pattern=r"no label columns selected: no column name starts with label_prefix 'tag_' "
            r"\(columns: a, b\)",
        ),
        dict(
            testcase_name="prefix_disagrees_with_num_labels",
            text="a,tag_1,tag_2\n1,0,1\n",
            kwargs=dict(label_prefix="tag_", num_labels=1),
            pattern=r"label_prefix 'tag_' selects 2 columns but num_labels=1",
        ),
        dict(
            testcase_name="only_labels",
            text="tag_1,tag_2\n0,1\n",
            kwargs=dict(label_prefix="tag_"),
            pattern=r"e\.csv: every column is a label; there are no feature columns",
        ),
        dict(
            testcase_name="too_many_labels",
            text="a,L,split\n1,0,train\n",
            kwargs=dict(num_labels=2),
            pattern=r"num_labels=2 but the file has only 2 columns besides the split",
        ),
        dict(
            testcase_name="bad_split_value",
            text="a,L,Split\n1,1,train\n2,0,holdout\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 3, column 3 \('Split'\): split value 'holdout'; use train",
        ),
        dict(
            testcase_name="split_without_train_rows",
            text="a,L,split\n1,1,test\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: the predefined split has no training rows",
        ),
        dict(
            testcase_name="no_header_row",
            text="1,2,0\n3,4,1\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 1: the first line holds numbers, not column names",
        ),
        dict(
            testcase_name="repeated_column_name",
            text="a,a,L\n1,2,0\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 1, column 2 \('a'\): column name 'a' repeats column 1",
        ),
        dict(
            testcase_name="unnamed_column",
            text="a,,L\n1,2,0\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: line 1, column 2 \(''\): the header cell is empty",
        ),
        dict(
            testcase_name="empty_file",
            text="\n\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: no header row \(the file is empty\)",
        ),
        dict(
            testcase_name="header_only",
            text="a,L\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: the data set has no rows",
        ),
        dict(
            testcase_name="not_utf8",
            text=b"a,L\n\xff\xfe,1\n",
            kwargs=dict(num_labels=1),
            pattern=r"e\.csv: not UTF-8 text",
        ),
    )
    def test_bad_file(self, text, kwargs, pattern):
        self.assert_load_error({"e.csv": text}, pattern, **kwargs)

    def test_bad_gzip(self):
        path = self.write("z.csv.gz", b"\x1f\x8b\x08\x00 not really gzip")
        with self.assertRaisesRegex(ValueError, r"z\.csv\.gz: cannot read the file .*truncated"):
            data.load_dataset(path, num_labels=1)

    def test_part_file_with_its_own_split_column(self):
        self.write("d/s_train.csv", "a,L,split\n1,1,train\n")
        self.write("d/s_test.csv", "a,L,split\n1,1,train\n")
        with self.assertRaisesRegex(ValueError, r"s_train\.csv: a train/test part file has its"):
            data.load_dataset(self.path("d"), num_labels=1)


if __name__ == "__main__":
    absltest.main()
