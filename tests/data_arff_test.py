"""Tests of the ARFF reader (cgmvae_jax/data/arff.py) through `load_dataset`."""

import numpy as np
from absl.testing import absltest, parameterized

from tests import data_testing

toy, write_arff = data_testing.toy, data_testing.write_arff


def _arff(attributes, rows, relation="r"):
    """ARFF text: line 1 @relation, one line per attribute, @data, then the rows."""
    head = [f"@relation {relation}", *(f"@attribute {a}" for a in attributes), "@data"]
    return "\n".join([*head, *rows]) + "\n"


_AL = ["a numeric", "L {0,1}"]
_ABL = ["a numeric", "b numeric", "L {0,1}"]
_TWO_LABELS = ["a numeric", "L1 {0,1}", "L2 {0,1}"]
_AL_ROW = _arff(_AL, ["1,1"])  # one feature, one label, one row
_TWO_ROW = _arff(_TWO_LABELS, ["1,0,1"])  # one feature, two labels, one row


class ArffTest(data_testing.TmpDirTest):
    @parameterized.parameters(True, False)
    def test_labels_first_with_num_labels(self, sparse):
        x, y = toy()
        names = ["f1", "f2", "f3", "f4", "f5"]
        write_arff(
            self.path("a.arff"), x, y, names, list("ABC"), sparse=sparse, label_location="start"
        )
        ds = self.load_quiet(self.path("a.arff"), num_labels=3, label_location="start")
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, y)
        self.assertEqual(ds.label_names, ("A", "B", "C"))

    @parameterized.parameters(("start", 3), ("end", -3))
    def test_meka_relation_gives_labels(self, location, c):
        x, y = toy()
        write_arff(
            self.path("m.arff"),
            x,
            y,
            list("vwxyz"),
            list("ABC"),
            sparse=False,
            label_location=location,
            relation=f"toy: -C {c}",
        )
        ds = self.load_quiet(self.path("m.arff"))
        np.testing.assert_array_equal(ds.y, y)
        self.assertEqual(ds.feature_names, tuple("vwxyz"))

    def test_xml_header_of_the_train_file_stem(self):
        x, y = toy()
        write_arff(self.path("s-train.arff"), x, y, list("vwxyz"), list("ABC"), sparse=True)
        self.write("s.xml", data_testing.xml_text(["C", "A", "B"]))
        ds = self.load_quiet(self.path("s-train.arff"))
        self.assertEqual(ds.label_names, ("A", "B", "C"))  # in attribute order
        np.testing.assert_array_equal(ds.y, y)
        self.assertEqual(ds.name, "s")

    def test_true_false_labels_and_sparse_nominal_default(self):
        x, y = toy()
        # Sparse rows omit FALSE only when FALSE is the first declared value (ARFF semantics).
        write_arff(
            self.path("b.arff"),
            x,
            y,
            list("vwxyz"),
            ["A", "B", "C"],
            sparse=True,
            label_type="{FALSE,TRUE}",
            label_text=lambda v: "TRUE" if v else "FALSE",
        )
        ds = self.load_quiet(self.path("b.arff"), num_labels=3)
        np.testing.assert_array_equal(ds.y, y)
        np.testing.assert_array_equal(ds.x, x)

    def test_mixed_sparse_and_dense_rows(self):
        text = _arff(_ABL, ["{0 1.5, 2 1}", "2.0,3.0,0", "{1 -1}"])
        ds = self.load_quiet(self.write("mix.arff", text), num_labels=1)
        np.testing.assert_array_equal(ds.x, [[1.5, 0], [2, 3], [0, -1]])
        np.testing.assert_array_equal(ds.y, [[1], [0], [0]])

    # (name, ARFF text, XML label names or None, keywords, expected message).
    @parameterized.named_parameters(
        (
            "numeric_label_three",
            _arff(["a numeric", "L1 numeric", "L2 numeric"], ["1,0,1", "3,3,0"]),
            None,
            {"num_labels": 2},
            r"e\.arff: label value 3\.0 at row 1, label column 0 \(file column 1\) \(label 'L1'\)",
        ),
        (
            "undeclared_nominal_value",
            _arff(_AL, ["1,0", "2,2"]),
            None,
            {"num_labels": 1},
            r"e\.arff: line 6 \(data row 1\): column 1 \(attribute 'L'\) has value '2', not one "
            r"of \{0, 1\}",
        ),
        (
            "missing_value",
            _arff(_AL, ["1,1", "?,0"]),
            None,
            {"num_labels": 1},
            r"e\.arff: a missing value or NaN at row 1, feature column 0 \(file column 0\) "
            r"\(feature 'a'\)",
        ),
        (
            "truncated_row",
            _arff(_ABL, ["1,2,0", "3,4"]),
            None,
            {"num_labels": 1},
            r"e\.arff: line 7 \(data row 1\): the row has 2 values but the header declares 3 "
            r".*truncated",
        ),
        (
            "text_nominal_feature",
            _arff(["colour {red,blue}", "L {0,1}"], ["red,1", "blue,0"]),
            None,
            {"num_labels": 1},
            r"e\.arff: attribute 'colour' \(column 0\) is nominal with values \{red, "
            r"blue\}.*one-hot",
        ),
        (
            "string_attribute",
            _arff(["name string", "L {0,1}"], ["x,1"]),
            None,
            {"num_labels": 1},
            r"e\.arff: attribute 'name' \(column 0\) has type STRING; only numeric",
        ),
        (
            "no_label_information",
            _AL_ROW,
            None,
            {},
            r"e\.arff: cannot tell which attributes are labels.*--config\.num_labels_arff=L",
        ),
        (
            "xml_names_a_missing_attribute",
            _TWO_ROW,
            ["L1", "X"],
            {},
            r"e\.xml names 2 labels but .*e\.arff has no attribute 'X'",
        ),
        (
            "num_labels_disagrees_with_xml",
            _TWO_ROW,
            ["L1", "L2"],
            {"num_labels": 1},
            r"e\.xml names 2 labels but num_labels=1",
        ),
        (
            "duplicate_label_in_xml",
            _TWO_ROW,
            ["L1", "L1"],
            {},
            r"e\.xml: duplicate label name 'L1'",
        ),
        (
            "given_xml_missing",
            _AL_ROW,
            None,
            {"xml_path": "nope.xml"},
            r"nope\.xml: the XML label header given for .*e\.arff does not exist",
        ),
        (
            "meka_disagrees_with_num_labels",
            _arff(_TWO_LABELS, ["1,0,1"], "'r: -C -2'"),
            None,
            {"num_labels": 1},
            r"e\.arff: the @relation header says -C -2 \(\|C\| labels\) but num_labels=1",
        ),
        (
            "every_attribute_a_label",
            _AL_ROW,
            None,
            {"num_labels": 2},
            r"e\.arff: num_labels=2, label_location='end' asks for 2 labels but the file has only "
            r"2 attributes",
        ),
    )
    def test_bad_arff(self, text, xml_labels, kwargs, pattern):
        files = {"e.arff": text}
        if xml_labels is not None:
            files["e.xml"] = data_testing.xml_text(xml_labels)
        self.assert_load_error(files, pattern, **kwargs)

    def test_truncated_xml(self):
        files = {"e.arff": _TWO_ROW, "e.xml": '<labels><label name="L1'}
        self.assert_load_error(files, r"e\.xml: not a readable Mulan XML label header")

    # (name, train file text, test file text, keywords, expected message).
    @parameterized.named_parameters(
        (
            "label_counts_differ",
            _arff(_TWO_LABELS, ["1,0,1"], "'s: -C -2'"),
            _arff(_AL, ["1,1"], "'s: -C -1'"),
            {},
            r"s-test\.arff has 1 labels but .*s-train\.arff has 2",
        ),
        (
            "feature_names_differ",
            _AL_ROW,
            _arff(["b numeric", "L {0,1}"], ["1,1"]),
            {"num_labels": 1},
            r"s-test\.arff and .*s-train\.arff disagree on feature column 0 \('b' vs 'a'\)",
        ),
    )
    def test_bad_train_test_directory(self, train, test, kwargs, pattern):
        files = {"d/s-train.arff": train, "d/s-test.arff": test}
        self.assert_load_error(files, pattern, load="d", **kwargs)


if __name__ == "__main__":
    absltest.main()
