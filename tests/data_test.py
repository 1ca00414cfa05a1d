"""Tests of cgmvae_jax.data: formats, validation messages, warnings, splits, synthetic data.

The shared data sets are found through $CGMVAE_DATA or <repo>/../shared/datasets; tests that
need them are skipped with a reason when they are absent. Each is loaded once per module.
Round trips write ARFF / libsvm text with the independent writers below (not the library's
code) and read it back with `load_dataset`. The large sets (reuters, delicious, bibtex) use a
row subset unless CGMVAE_FULL_ROUNDTRIP=1 (the full round trips take ~20 s more).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from unittest import mock
from xml.sax import saxutils

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import config_lib, data
from cgmvae_jax.data import synthetic, validation
from tests import data_testing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def shared_dir():
    for candidate in (
        os.environ.get("CGMVAE_DATA"),
        os.path.join(REPO, "..", "shared", "datasets"),
    ):
        if candidate and os.path.exists(os.path.join(candidate, "yeast.npz")):
            return candidate
    return None


_CACHE = {}


def shared(name):
    """Loads a shared data set once per module (warnings silenced here; tested elsewhere)."""
    directory = shared_dir()
    if directory is None or not os.path.exists(os.path.join(directory, f"{name}.npz")):
        raise absltest.SkipTest(
            f"shared data set {name}.npz not found ($CGMVAE_DATA or <repo>/../shared/datasets)"
        )
    if name not in _CACHE:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", data.DataWarning)
            _CACHE[name] = data.load_dataset(name, directory)
    return _CACHE[name]


# ---------------------------------------------------------------------------------------------
# Independent writers used by the tests.


def _quote(name):
    return "'" + str(name) + "'"  # liac-arff takes attribute names literally


def write_arff(
    path,
    x,
    y,
    feature_names,
    label_names,
    *,
    sparse,
    label_location="end",
    relation="test",
    label_type="{0,1}",
    label_text=None,
):
    """Writes a Mulan/MEKA-style ARFF: numeric features, nominal {0,1} labels."""
    label_text = label_text or (lambda v: str(int(v)))
    f_attrs = [f"@attribute {_quote(n)} numeric" for n in feature_names]
    l_attrs = [f"@attribute {_quote(n)} {label_type}" for n in label_names]
    at_end = label_location == "end"
    lines = [f"@relation {_quote(relation)}", ""]
    lines += f_attrs + l_attrs if at_end else l_attrs + f_attrs
    lines += ["", "@data"]
    nf, nl = x.shape[1], y.shape[1]
    table = np.concatenate([x, y], 1) if at_end else np.concatenate([y, x], 1)
    flags = [np.zeros(nf, bool), np.ones(nl, bool)]
    is_label = np.concatenate(flags if at_end else flags[::-1])
    for row in table.astype(np.float64):
        cols = np.nonzero(row)[0] if sparse else range(nf + nl)
        texts = [label_text(row[k]) if is_label[k] else repr(float(row[k])) for k in cols]
        if sparse:
            lines.append("{" + ",".join(f"{k} {t}" for k, t in zip(cols, texts, strict=True)) + "}")
        else:
            lines.append(",".join(texts))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_xml(path, label_names):
    body = "".join(f"  <label name={saxutils.quoteattr(str(n))}></label>\n" for n in label_names)
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<labels xmlns="http://mulan.sourceforge.net/labels">\n{body}</labels>\n'
        )


def write_libsvm(path, x, y, *, header=True, base=0):
    """Writes Extreme Classification text: optional header `n F L`, rows `l1,l2 i:v ...`."""
    lines = [f"{x.shape[0]} {x.shape[1]} {y.shape[1]}"] if header else []
    for xi, yi in zip(x, y, strict=True):
        labels = ",".join(str(j) for j in np.nonzero(yi)[0])
        feats = " ".join(f"{j + base}:{float(xi[j])!r}" for j in np.nonzero(xi)[0])
        lines.append(f"{labels} {feats}".strip() if labels else feats)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def toy(n=20, f=5, num_labels=3, seed=0):
    """Small clean arrays: distinct rows, every row labelled, no constant feature."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f)).astype(np.float32)
    x[rng.random((n, f)) < 0.3] = 0.0
    x[0] = 1.5  # no constant column
    x[1] = -2.0
    y = (rng.random((n, num_labels)) < 0.4).astype(np.uint8)
    y[np.arange(n), rng.integers(num_labels, size=n)] = 1
    return x, y


def save_raw_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


class TmpDirTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="data_test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, *parts):
        p = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def load_quiet(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", data.DataWarning)
            return data.load_dataset(*args, **kwargs)


# ---------------------------------------------------------------------------------------------


class SharedDatasetsTest(TmpDirTest):
    @parameterized.named_parameters((n, n) for n in SHARED)
    def test_loads_with_published_shape(self, name):
        ds = shared(name)
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
        ds = shared(name)
        x, y = self._subset(ds)
        path = self.path(f"{name}.txt")
        write_libsvm(path, x, y, header=True, base=0)
        back = self.load_quiet(path)
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)
        self.assertEqual(back.x.dtype, np.float32)

    @parameterized.named_parameters((n, n) for n in SHARED)
    def test_round_trip_sparse_arff(self, name):
        ds = shared(name)
        x, y = self._subset(ds)
        labels = list(ds.label_names)
        if set(labels) & set(ds.feature_names):  # reuters: topic names are also words
            labels = [f"topic_{s}" for s in labels]
        write_arff(self.path(f"{name}.arff"), x, y, ds.feature_names, labels, sparse=True)
        write_xml(self.path(f"{name}.xml"), labels)
        back = self.load_quiet(self.path(f"{name}.arff"))
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)
        self.assertEqual(back.feature_names, ds.feature_names)
        self.assertEqual(back.label_names, tuple(labels))

    @parameterized.named_parameters((n, n) for n in DENSE_ARFF)
    def test_round_trip_dense_arff(self, name):
        ds = shared(name)
        write_arff(self.path("d.arff"), ds.x, ds.y, ds.feature_names, ds.label_names, sparse=False)
        back = self.load_quiet(self.path("d.arff"), num_labels=ds.num_labels)
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        self.assertEqual(back.label_names, ds.label_names)

    def test_train_test_arff_directory_reproduces_npz_and_split(self):
        ds = shared("yeast")
        for code, part in ((0, "train"), (1, "test")):
            rows = ds.split == code
            write_arff(
                self.path("yeast", f"yeast-{part}.arff"),
                ds.x[rows],
                ds.y[rows],
                ds.feature_names,
                ds.label_names,
                sparse=False,
            )
        write_xml(self.path("yeast", "yeast.xml"), ds.label_names)
        back = self.load_quiet("yeast", self.tmp)
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        np.testing.assert_array_equal(back.split, ds.split)
        self.assertEqual(back.label_names, ds.label_names)

    def test_train_test_libsvm_directory(self):
        ds = shared("emotions")
        for code, part in ((0, "train"), (1, "test")):
            rows = ds.split == code
            write_libsvm(self.path("emo", f"emotions_{part}.txt"), ds.x[rows], ds.y[rows])
        back = self.load_quiet(self.path("emo"))
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        np.testing.assert_array_equal(back.split, ds.split)

    @parameterized.named_parameters((n, n) for n in ("yeast", "sider", "medical"))
    def test_save_npz_round_trip(self, name):
        ds = shared(name)
        path = data.save_npz(ds, self.path(f"{name}.npz"))
        back = self.load_quiet(path)
        np.testing.assert_array_equal(back.x, ds.x)
        np.testing.assert_array_equal(back.y, ds.y)
        self.assertEqual(back.label_names, ds.label_names)
        self.assertEqual(back.feature_names, ds.feature_names)
        if ds.split is None:
            self.assertIsNone(back.split)
        else:
            np.testing.assert_array_equal(back.split, ds.split)

    def test_delicious_rows_without_labels_warn(self):
        ds = shared("delicious")
        with self.assertWarnsRegex(data.NoLabelRowsWarning, r"14 of 16105 rows have no positive"):
            validation.quality_warnings(ds)

    def test_yeast_validation_carved_from_train(self):
        splits = data.make_splits(shared("yeast"), seed=1)
        self.assertEqual(
            (len(splits.train_index), len(splits.val_index), len(splits.test_index)),
            (1350, 150, 917),
        )
        self.assertIn(
            "validation = 10% of the predefined train part (150 rows, seed 1)", splits.description
        )


# ---------------------------------------------------------------------------------------------


class FormatsTest(TmpDirTest):
    def test_minimal_npz_gets_default_names(self):
        x, y = toy()
        ds = data.load_dataset(save_raw_npz(self.path("m.npz"), X=x, Y=y))
        np.testing.assert_array_equal(ds.x, x)
        self.assertEqual(ds.label_names, ("label_0", "label_1", "label_2"))
        self.assertEqual(ds.feature_names[0], "feature_0")
        self.assertIsNone(ds.split)
        self.assertEqual((ds.name, ds.source), ("m", self.path("m.npz")))

    def _write_mpvae(self, name, x, y, meta=0, idx=None, labels_file=False):
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

    def test_mpvae_layout_with_meta_offset_and_num_labels(self):
        x, y = toy(n=12, f=4, num_labels=3)
        idx = {"train": [0, 2, 4, 6, 8, 10], "val": [1, 3], "test": [5, 7, 9, 11]}
        self._write_mpvae("toy", x, y, meta=2, idx=idx)
        ds = self.load_quiet("toy", self.tmp, meta_offset=2, num_labels=3)
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, y)
        expected = np.full(12, 0, np.int8)
        expected[[1, 3]] = 2
        expected[[5, 7, 9, 11]] = 1
        np.testing.assert_array_equal(ds.split, expected)
        splits = data.make_splits(ds, seed=0, standardize=False)
        np.testing.assert_array_equal(splits.val_index, [1, 3])  # used as is
        np.testing.assert_array_equal(splits.test_index, [5, 7, 9, 11])
        self.assertStartsWith(splits.description, "predefined train/validation/test")

    def test_mpvae_label_count_from_labels_file_and_known_name(self):
        x, y = toy(n=8, f=3, num_labels=38)
        self._write_mpvae("mirflickr", x, y, idx={"train": [0, 1, 2, 3, 4], "test": [5, 6]})
        ds = self.load_quiet("mirflickr", self.tmp)  # L from KNOWN_LABEL_COUNTS
        self.assertEqual(ds.num_labels, 38)
        self.assertEqual(ds.split.tolist(), [0, 0, 0, 0, 0, 1, 1, -1])
        x, y = toy(n=8, f=3, num_labels=2)
        self._write_mpvae("other", x, y, idx={"train": range(6), "test": [6, 7]}, labels_file=True)
        ds = self.load_quiet(self.path("other", "other_data.npy"))
        self.assertEqual(ds.label_names, ("tag0", "tag1"))
        np.testing.assert_array_equal(ds.x, x)

    def test_mpvae_rows_in_no_split_warn(self):
        x, y = toy(n=8)
        self._write_mpvae("t", x, y, idx={"train": range(5), "test": [5]})
        with self.assertWarnsRegex(data.UnassignedRowsWarning, r"2 of 8 rows are in no"):
            data.load_dataset(self.path("t"), num_labels=3)

    @parameterized.parameters(True, False)
    def test_arff_labels_first_with_num_labels(self, sparse):
        x, y = toy()
        write_arff(
            self.path("a.arff"),
            x,
            y,
            ["f1", "f2", "f3", "f4", "f5"],
            ["A", "B", "C"],
            sparse=sparse,
            label_location="start",
        )
        ds = self.load_quiet(self.path("a.arff"), num_labels=3, label_location="start")
        np.testing.assert_array_equal(ds.x, x)
        np.testing.assert_array_equal(ds.y, y)
        self.assertEqual(ds.label_names, ("A", "B", "C"))

    @parameterized.parameters(("start", 3), ("end", -3))
    def test_arff_meka_relation_gives_labels(self, location, c):
        x, y = toy()
        write_arff(
            self.path("m.arff"),
            x,
            y,
            list("vwxyz"),
            ["A", "B", "C"],
            sparse=False,
            label_location=location,
            relation=f"toy: -C {c}",
        )
        ds = self.load_quiet(self.path("m.arff"))
        np.testing.assert_array_equal(ds.y, y)
        self.assertEqual(ds.feature_names, tuple("vwxyz"))

    def test_arff_true_false_labels_and_sparse_nominal_default(self):
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

    def test_arff_mixed_sparse_and_dense_rows(self):
        text = (
            "@relation r\n@attribute a numeric\n@attribute b numeric\n@attribute L {0,1}\n"
            "@data\n{0 1.5, 2 1}\n2.0,3.0,0\n{1 -1}\n"
        )
        path = self.path("mix.arff")
        with open(path, "w") as f:
            f.write(text)
        ds = self.load_quiet(path, num_labels=1)
        np.testing.assert_array_equal(ds.x, [[1.5, 0], [2, 3], [0, -1]])
        np.testing.assert_array_equal(ds.y, [[1], [0], [0]])

    def test_libsvm_one_based_without_header_and_rows_without_labels(self):
        path = self.path("s.svm")
        with open(path, "w") as f:
            f.write("0,2 1:0.5 3:2\n4:1.25  # comment\n\n1 2:-1\n")
        ds = self.load_quiet(path, num_labels=3, num_features=4)
        np.testing.assert_array_equal(
            ds.x, [[0.5, 0, 2, 0], [0, 0, 0, 1.25], [0] * 4, [0, -1, 0, 0]]
        )
        np.testing.assert_array_equal(ds.y, [[1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0]])

    def test_libsvm_index_base_detection_and_override(self):
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

    def test_libsvm_one_based_detected_from_index_equal_to_f(self):
        x, y = toy()
        x[:, 0] = 0.0
        x[0, -1] = 7.0  # index F appears
        write_libsvm(self.path("one.txt"), x, y, header=True, base=1)
        np.testing.assert_array_equal(self.load_quiet(self.path("one.txt")).x, x)

    def test_detect_format_from_content(self):
        x, y = toy()
        save_raw_npz(self.path("a.bin"), X=x, Y=y)
        write_arff(self.path("b.dat"), x, y, list("vwxyz"), list("ABC"), sparse=False)
        write_libsvm(self.path("c.dat"), x, y)
        self.assertEqual(data.detect_format(self.path("a.bin")), "npz")
        self.assertEqual(data.detect_format(self.path("b.dat")), "arff")
        self.assertEqual(data.detect_format(self.path("c.dat")), "libsvm")
        ds = self.load_quiet(self.path("b.dat"), num_labels=3)
        np.testing.assert_array_equal(ds.y, y)

    def test_explicit_format_overrides_extension(self):
        x, y = toy()
        write_libsvm(self.path("c.arff"), x, y)
        ds = self.load_quiet(self.path("c.arff"), format="libsvm")
        np.testing.assert_array_equal(ds.x, x)

    def test_directory_with_validation_part(self):
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

    def test_data_layer_does_not_import_jax(self):
        code = "import sys, cgmvae_jax.data; assert 'jax' not in sys.modules, 'jax imported'"
        env = dict(os.environ, PYTHONPATH=REPO)
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, result.stderr)


# ---------------------------------------------------------------------------------------------


class BadInputTest(TmpDirTest):
    """One test per bad input; each message names the file, the row/column and a fix."""

    def test_label_not_zero_or_one_npz(self):
        x, y = toy()
        y = y.astype(np.int64)
        y[3, 1] = 2
        path = save_raw_npz(self.path("bad.npz"), X=x, Y=y)
        with self.assertRaisesRegex(
            ValueError,
            r"bad\.npz: label value 2 at row 3, label column 1"
            r".*must be 0 or 1.*Fix: binarise",
        ):
            data.load_dataset(path)

    def test_label_not_zero_or_one_mpvae(self):
        x, y = toy(n=6)
        y = y.astype(np.float64)
        y[4, 2] = 0.5
        directory = self.path("m", "")
        np.save(directory + "m_data.npy", np.concatenate([np.zeros((6, 1)), y, x], 1))
        np.save(directory + "m_train_idx.npy", np.arange(4))
        np.save(directory + "m_test_idx.npy", np.arange(4, 6))
        with self.assertRaisesRegex(
            ValueError,
            r"m_data\.npy: label value 0\.5 at row 4, label "
            r"column 2 \(file column 3\)",
        ):
            data.load_dataset(directory, meta_offset=1, num_labels=3)

    def test_label_not_zero_or_one_numeric_arff(self):
        x, y = toy()
        y = y.astype(np.int64)
        y[5, 0] = 3
        write_arff(
            self.path("n.arff"),
            x,
            y,
            list("vwxyz"),
            list("ABC"),
            sparse=False,
            label_type="numeric",
        )
        with self.assertRaisesRegex(
            ValueError,
            r"n\.arff: label value 3\.0 at row 5, label "
            r"column 0 \(file column 5\) \(label 'A'\)",
        ):
            data.load_dataset(self.path("n.arff"), num_labels=3)

    def test_undeclared_nominal_label_arff(self):
        x, y = toy()
        write_arff(
            self.path("u.arff"),
            x,
            y,
            list("vwxyz"),
            list("ABC"),
            sparse=False,
            label_text=lambda v: "2" if v else "0",
        )
        with self.assertRaisesRegex(
            ValueError,
            r"u\.arff: line 13 \(data row 0\): column \d \(attribute '[ABC]'\) has value '2', "
            r"not one of \{0, 1\} \(Data value 2 not found",
        ):
            data.load_dataset(self.path("u.arff"), num_labels=3)

    def test_nan_feature_npz(self):
        x, y = toy()
        x[2, 4] = np.nan
        path = save_raw_npz(self.path("nan.npz"), X=x, Y=y)
        with self.assertRaisesRegex(
            ValueError,
            r"nan\.npz: a missing value or NaN at row 2, "
            r"feature column 4.*Fix: impute",
        ):
            data.load_dataset(path)

    def test_inf_feature_libsvm(self):
        path = self.path("inf.txt")
        with open(path, "w") as f:
            f.write("2 3 2\n0 0:1 1:2\n1 2:inf\n")
        with self.assertRaisesRegex(
            ValueError,
            r"inf\.txt: line 3 \(row 1\): feature 2 has value "
            r"inf",
        ):
            data.load_dataset(path)

    def test_missing_value_arff(self):
        path = self.path("q.arff")
        with open(path, "w") as f:
            f.write("@relation r\n@attribute a numeric\n@attribute L {0,1}\n@data\n1,1\n?,0\n")
        with self.assertRaisesRegex(
            ValueError,
            r"q\.arff: a missing value or NaN at row 1, "
            r"feature column 0 \(file column 0\) \(feature 'a'\)",
        ):
            data.load_dataset(path, num_labels=1)

    def test_feature_count_disagrees_between_parts(self):
        x, y = toy(n=10)
        write_libsvm(self.path("d", "s_train.txt"), x, y)
        write_libsvm(self.path("d", "s_test.txt"), x[:, :4], y)
        with self.assertRaisesRegex(
            ValueError,
            r"s_test\.txt has 4 features \(header\) but "
            r".*s_train\.txt has 5",
        ):
            data.load_dataset(self.path("d"))

    def test_label_count_disagrees_between_arff_parts(self):
        x, y = toy(n=10)
        write_arff(
            self.path("d", "s-train.arff"),
            x,
            y,
            list("vwxyz"),
            list("ABC"),
            sparse=False,
            relation="s: -C -3",
        )
        write_arff(
            self.path("d", "s-test.arff"),
            x,
            y[:, :2],
            list("vwxyz"),
            list("AB"),
            sparse=False,
            relation="s: -C -2",
        )
        with self.assertRaisesRegex(
            ValueError,
            r"s-test\.arff has 2 labels but .*s-train\.arff "
            r"has 3",
        ):
            data.load_dataset(self.path("d"))

    def test_arff_disagrees_with_xml(self):
        x, y = toy()
        write_arff(self.path("x.arff"), x, y, list("vwxyz"), list("ABC"), sparse=True)
        write_xml(self.path("x.xml"), ["A", "B", "D"])
        with self.assertRaisesRegex(
            ValueError,
            r"x\.xml names 3 labels but .*x\.arff has no "
            r"attribute 'D'",
        ):
            data.load_dataset(self.path("x.arff"))

    def test_num_labels_disagrees_with_xml(self):
        x, y = toy()
        write_arff(self.path("x.arff"), x, y, list("vwxyz"), list("ABC"), sparse=True)
        write_xml(self.path("x.xml"), list("ABC"))
        with self.assertRaisesRegex(ValueError, r"x\.xml names 3 labels but num_labels=4"):
            data.load_dataset(self.path("x.arff"), num_labels=4)

    def test_label_beyond_header_count_libsvm(self):
        path = self.path("h.txt")
        with open(path, "w") as f:
            f.write("2 3 2\n0 0:1\n0,5 1:1\n")
        with self.assertRaisesRegex(
            ValueError,
            r"h\.txt: line 3 \(row 1\): label 5 is outside "
            r"0\.\.1 \(2 labels from the header\)",
        ):
            data.load_dataset(path)

    def test_feature_index_beyond_header_libsvm(self):
        path = self.path("h.txt")
        with open(path, "w") as f:
            f.write("2 3 2\n0 0:1\n1 0:1 7:2\n")
        with self.assertRaisesRegex(
            ValueError,
            r"h\.txt: line 3 \(row 1\): feature index 7 is "
            r"outside 0\.\.2",
        ):
            data.load_dataset(path)

    def _mpvae(self, train, test, val=None, n=6):
        x, y = toy(n=n)
        directory = self.path("p", "")
        np.save(directory + "p_data.npy", np.concatenate([y, x], 1))
        np.save(directory + "p_train_idx.npy", np.asarray(train))
        np.save(directory + "p_test_idx.npy", np.asarray(test))
        if val is not None:
            np.save(directory + "p_val_idx.npy", np.asarray(val))
        return directory

    def test_index_out_of_range(self):
        directory = self._mpvae([0, 1, 2], [3, 9])
        with self.assertRaisesRegex(
            ValueError,
            r"p_test_idx\.npy: index 9 at position 1 is out "
            r"of range for .*p_data\.npy with 6 rows",
        ):
            data.load_dataset(directory, num_labels=3)

    def test_index_files_overlap(self):
        directory = self._mpvae([0, 1, 2, 3], [3, 4], val=[5])
        with self.assertRaisesRegex(
            ValueError,
            r"p_test_idx\.npy and .*p_train_idx\.npy overlap: "
            r"1 rows .*\(first: row 3\)",
        ):
            data.load_dataset(directory, num_labels=3)

    def test_index_listed_twice(self):
        directory = self._mpvae([0, 1, 1], [3])
        with self.assertRaisesRegex(ValueError, r"p_train_idx\.npy: row 1 is listed twice"):
            data.load_dataset(directory, num_labels=3)

    def test_empty_index_file(self):
        directory = self._mpvae([0, 1, 2], [3], val=np.zeros(0, np.int64))
        with self.assertRaisesRegex(ValueError, r"p_val_idx\.npy: the validation split is empty"):
            data.load_dataset(directory, num_labels=3)

    def test_empty_split_from_fractions(self):
        x, y = toy(n=8)
        ds = data.Dataset(x, y, ("a", "b", "c"), tuple("vwxyz"), None, "tiny", "tiny.npz")
        with self.assertRaisesRegex(
            ValueError,
            r"tiny\.npz: the validation split is empty .*"
            r"n = 8\)\. Fix: raise val_fraction",
        ):
            data.make_splits(ds, seed=0, val_fraction=0.05)

    def test_empty_test_part_file(self):
        x, y = toy(n=5)
        write_libsvm(self.path("d", "s_train.txt"), x, y)
        with open(self.path("d", "s_test.txt"), "w") as f:
            f.write("0 5 3\n")
        with self.assertRaisesRegex(ValueError, r"s_test\.txt: the test split is empty"):
            data.load_dataset(self.path("d"))

    def test_predefined_split_without_train_rows(self):
        x, y = toy()
        path = save_raw_npz(self.path("s.npz"), X=x, Y=y, split=np.ones(len(x), np.int8))
        with self.assertRaisesRegex(ValueError, r"s\.npz: the predefined split has no training"):
            data.load_dataset(path)

    def test_duplicate_label_names(self):
        x, y = toy()
        path = save_raw_npz(self.path("d.npz"), X=x, Y=y, label_names=np.array(["a", "b", "a"]))
        with self.assertRaisesRegex(
            ValueError,
            r"d\.npz: duplicate label name 'a' at label "
            r"columns 0 and 2",
        ):
            data.load_dataset(path)

    def test_duplicate_label_names_in_xml(self):
        x, y = toy()
        write_arff(self.path("x.arff"), x, y, list("vwxyz"), list("ABC"), sparse=False)
        write_xml(self.path("x.xml"), ["A", "B", "A"])
        with self.assertRaisesRegex(ValueError, r"x\.xml: duplicate label name 'A'"):
            data.load_dataset(self.path("x.arff"))

    def test_unknown_format_content(self):
        path = self.path("table.dat")
        with open(path, "w") as f:
            f.write("a;b;c\n1;2;3\n")
        with self.assertRaisesRegex(
            ValueError,
            r"table\.dat: unknown data format .*Supported: "
            r".*Fix: pass format=",
        ):
            data.load_dataset(path)

    def test_unknown_format_name(self):
        x, y = toy()
        path = save_raw_npz(self.path("a.npz"), X=x, Y=y)
        with self.assertRaisesRegex(
            ValueError,
            r"a\.npz: unknown data format 'excel'. Use one of "
            r"auto, npz, mpvae, arff, libsvm, csv",
        ):
            data.load_dataset(path, format="excel")

    def test_truncated_npz(self):
        x, y = toy(n=200, f=50)
        path = save_raw_npz(self.path("t.npz"), X=x, Y=y)
        with open(path, "rb") as f:
            blob = f.read()
        with open(path, "wb") as f:
            f.write(blob[: len(blob) // 2])
        with self.assertRaisesRegex(ValueError, r"t\.npz: cannot read the npz file .*truncated"):
            data.load_dataset(path)

    def test_truncated_npy(self):
        directory = self._mpvae([0, 1, 2], [3])
        with open(directory + "p_data.npy", "rb") as f:
            blob = f.read()
        with open(directory + "p_data.npy", "wb") as f:
            f.write(blob[:-40])
        with self.assertRaisesRegex(
            ValueError,
            r"p_data\.npy: cannot read the \.npy file.*"
            r"truncated",
        ):
            data.load_dataset(directory, num_labels=3)

    def test_truncated_arff_row(self):
        x, y = toy()
        write_arff(self.path("t.arff"), x, y, list("vwxyz"), list("ABC"), sparse=False)
        with open(self.path("t.arff")) as f:
            text = f.read()
        with open(self.path("t.arff"), "w") as f:
            f.write(text[: text.rindex(",")])  # cut inside the last row
        with self.assertRaisesRegex(
            ValueError,
            r"t\.arff: line 32 \(data row 19\): the row has 7 values but the header declares 8 "
            r"\(Bad @DATA instance format in line 32.*truncated",
        ):
            data.load_dataset(self.path("t.arff"), num_labels=3)

    def test_truncated_libsvm_against_header(self):
        x, y = toy()
        write_libsvm(self.path("t.txt"), x, y)
        with open(self.path("t.txt")) as f:
            lines = f.readlines()
        with open(self.path("t.txt"), "w") as f:
            f.writelines(lines[:-3])
        with self.assertRaisesRegex(
            ValueError,
            r"t\.txt: the header says 20 rows but the file "
            r"has 17.*truncated",
        ):
            data.load_dataset(self.path("t.txt"))

    def test_rows_differ_between_x_and_y(self):
        x, y = toy()
        path = save_raw_npz(self.path("r.npz"), X=x, Y=y[:-1])
        with self.assertRaisesRegex(ValueError, r"r\.npz: X has 20 rows but Y has 19 rows"):
            data.load_dataset(path)

    def test_npz_without_y(self):
        x, _ = toy()
        path = save_raw_npz(self.path("r.npz"), X=x)
        with self.assertRaisesRegex(ValueError, r"r\.npz: the npz has no array 'Y' \(it has: X\)"):
            data.load_dataset(path)

    def test_mpvae_label_count_unknown(self):
        directory = self._mpvae([0, 1, 2], [3])
        with self.assertRaisesRegex(
            ValueError,
            r"p_data\.npy: cannot tell how many of the 8 "
            r"columns .* are labels\. Fix: pass num_labels=L",
        ):
            data.load_dataset(directory)

    def test_arff_without_label_information(self):
        x, y = toy()
        write_arff(self.path("a.arff"), x, y, list("vwxyz"), list("ABC"), sparse=False)
        with self.assertRaisesRegex(
            ValueError,
            r"a\.arff: cannot tell which attributes are "
            r"labels.*--config\.num_labels_arff=L",
        ):
            data.load_dataset(self.path("a.arff"))

    def test_text_nominal_feature_arff(self):
        path = self.path("c.arff")
        with open(path, "w") as f:
            f.write(
                "@relation r\n@attribute colour {red,blue}\n@attribute L {0,1}\n@data\n"
                "red,1\nblue,0\n"
            )
        with self.assertRaisesRegex(
            ValueError,
            r"c\.arff: attribute 'colour' \(column 0\) is "
            r"nominal with values \{red, blue\}.*one-hot",
        ):
            data.load_dataset(path, num_labels=1)

    def test_libsvm_garbage_token(self):
        path = self.path("g.txt")
        with open(path, "w") as f:
            f.write("0 1:1\n1 2-3\n")
        with self.assertRaisesRegex(
            ValueError,
            r"g\.txt: line 2 \(row 1\): cannot parse feature "
            r"'2-3'",
        ):
            data.load_dataset(path)


# ---------------------------------------------------------------------------------------------


class WarningsTest(TmpDirTest):
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


# ---------------------------------------------------------------------------------------------


class SplitsTest(TmpDirTest):
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


# ---------------------------------------------------------------------------------------------


class SyntheticTest(parameterized.TestCase):
    @parameterized.parameters((100, 8, 5), (300, 64, 12), (50, 3, 1))
    def test_controllable_sizes(self, n, f, num_labels):
        ds = data.synthetic_dataset(n, f, num_labels, seed=0)
        self.assertEqual(ds.x.shape, (n, f))
        self.assertEqual(ds.y.shape, (n, num_labels))
        self.assertEqual((ds.x.dtype, ds.y.dtype), (np.float32, np.uint8))
        self.assertTrue(np.all(ds.y.sum(1) >= 1))
        self.assertIsNone(ds.split)
        self.assertEqual(ds.source, "synthetic")

    def test_deterministic_for_a_seed(self):
        a, b = data.synthetic_dataset(seed=3), data.synthetic_dataset(seed=3)
        c = data.synthetic_dataset(seed=4)
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)
        self.assertFalse(np.array_equal(a.y, c.y))

    def test_labels_co_occur_within_clusters(self):
        ds = data.synthetic_dataset(4000, 16, 12, seed=0)
        cluster = synthetic.label_clusters(12)
        y = ds.y.astype(np.float64)
        cond = (y.T @ y) / y.sum(0)[:, None]  # [L, L] P(y_j = 1 | y_i = 1)
        same = cluster[:, None] == cluster[None, :]
        off_diag = ~np.eye(12, dtype=bool)
        within = cond[same & off_diag].mean()
        across = cond[~same].mean()
        self.assertGreater(within, 2 * across)
        self.assertGreater(within, 0.4)

    def test_features_predict_labels(self):
        ds = data.synthetic_dataset(2000, 32, 8, seed=1)
        x = np.c_[ds.x, np.ones(len(ds.x))].astype(np.float64)
        coef, *_ = np.linalg.lstsq(x[:1500], ds.y[:1500].astype(np.float64), rcond=None)
        pred = x[1500:] @ coef > 0.5
        accuracy = (pred == ds.y[1500:]).mean()
        majority = max(ds.y[1500:].mean(), 1 - ds.y[1500:].mean())
        self.assertGreater(accuracy, majority + 0.05)

    def test_bad_sizes(self):
        with self.assertRaisesRegex(ValueError, r"num_labels=0 must be >= 1"):
            data.synthetic_dataset(10, 3, 0)


# ---------------------------------------------------------------------------------------------


class LoaderTest(TmpDirTest):
    def test_name_lookup_order_npz_then_directory(self):
        x, y = toy()
        write_libsvm(self.path("d", "d_train.txt"), x, y)
        write_libsvm(self.path("d", "d_test.txt"), x, y)
        self.assertEqual(self.load_quiet("d", self.tmp).source, self.path("d"))
        save_raw_npz(self.path("d.npz"), X=x, Y=y)
        self.assertEqual(self.load_quiet("d", self.tmp).source, self.path("d.npz"))

    def test_data_dir_defaults_to_environment(self):
        x, y = toy()
        save_raw_npz(self.path("envset.npz"), X=x, Y=y)
        with mock.patch.dict(os.environ, {"CGMVAE_DATA": self.tmp}):
            self.assertEqual(data.default_data_dir(), self.tmp)
            self.assertEqual(self.load_quiet("envset").num_examples, 20)
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(data.default_data_dir(), "./data")

    def test_not_found_message(self):
        with self.assertRaises(data.DatasetNotFoundError) as ctx:
            data.load_dataset("nus_vec", self.tmp)
        message = str(ctx.exception)
        self.assertIsInstance(ctx.exception, FileNotFoundError)
        self.assertIn(os.path.join(self.tmp, "nus_vec.npz"), message)
        self.assertIn(os.path.join(self.tmp, "nus_vec") + os.sep, message)
        self.assertIn("MPVAE_data.tar.gz", message)
        self.assertIn("python launch/train.py --config=configs/demo.py", message)
        self.assertIn(os.path.join(self.tmp, "nus_vec.npz"), ctx.exception.searched)

    def test_not_found_message_names_mulan_and_fetch(self):
        with self.assertRaisesRegex(
            data.DatasetNotFoundError,
            r"(?s)yeast.*shared collection.*"
            r"Mulan.*--config\.fetch=True",
        ):
            data.load_dataset("yeast", self.tmp)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"(?s)prepare_data\.py"):
            data.load_dataset("my_own_set", self.tmp)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Looked for:\n  .*nope\.npz"):
            data.load_dataset(self.path("nope.npz"))

    def test_did_you_mean_a_data_set_in_data_dir_or_a_known_name(self):
        x, y = toy()
        save_raw_npz(self.path("my_set.npz"), X=x, Y=y)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Did you mean 'my_set'\?"):
            data.load_dataset("my_sett", self.tmp)
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Did you mean 'yeast'\?"):
            data.load_dataset("yaest", self.tmp)  # from the fetch registry
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"Did you mean '.*my_set\.npz'\?"):
            data.load_dataset(self.path("my_sat.npz"))
        with self.assertRaises(data.DatasetNotFoundError) as ctx:
            data.load_dataset("qqqqqq", self.tmp)
        self.assertNotIn("Did you mean", str(ctx.exception))

    def test_missing_data_dir_is_reported_as_such(self):
        missing = self.path("no_such_dir")
        with self.assertRaisesRegex(
            data.DatasetNotFoundError,
            r"^data_dir .*no_such_dir does not exist; set --config\.data_dir or CGMVAE_DATA "
            r"to the directory that holds yeast\.npz",
        ):
            data.load_dataset("yeast", missing)
        config = config_lib.base_config()
        config.dataset, config.data_dir = "yeast", missing
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"^data_dir .* does not exist"):
            data.load_from_config(config)

    def test_empty_environment_variable_means_the_default_data_dir(self):
        cwd = os.getcwd()
        os.chdir(self.tmp)  # no ./data here
        self.addCleanup(os.chdir, cwd)
        with mock.patch.dict(os.environ, {"CGMVAE_DATA": ""}):
            self.assertEqual(data.default_data_dir(), "./data")
            with self.assertRaisesRegex(
                data.DatasetNotFoundError,
                r"^data_dir \./data \(the default: \$CGMVAE_DATA is not set\) does not exist",
            ):
                data.load_dataset("yeast")

    def test_load_from_config_synthetic(self):
        config = config_lib.base_config()
        config.synthetic_examples, config.synthetic_features, config.synthetic_labels = 300, 7, 5
        ds, s = data.load_from_config(config)
        self.assertEqual((ds.num_examples, ds.num_features, ds.num_labels), (300, 7, 5))
        self.assertEqual((len(s.train_index), len(s.val_index), len(s.test_index)), (240, 30, 30))
        np.testing.assert_array_equal(ds.x, data.synthetic_dataset(300, 7, 5, seed=1).x)

    def test_load_from_config_file_and_fractions(self):
        x, y = toy(n=100)
        save_raw_npz(self.path("c.npz"), X=x, Y=y)
        config = config_lib.base_config()
        config.dataset, config.data_dir = "c", self.tmp
        config.train_fraction, config.standardize = 0.5, False
        ds, s = data.load_from_config(config)
        self.assertEqual(ds.name, "c")
        self.assertLen(s.train_index, 40)
        self.assertIsNone(s.feature_mean)

    def test_load_from_config_random_split_ignores_predefined_split(self):
        x, y = toy(n=100)
        split = np.zeros(100, np.int8)
        split[70:] = 1
        save_raw_npz(self.path("p.npz"), X=x, Y=y, split=split)
        config = config_lib.base_config()
        config.dataset, config.data_dir = "p", self.tmp
        _, predefined = data.load_from_config(config)
        self.assertLen(predefined.test_index, 30)
        np.testing.assert_array_equal(np.sort(predefined.test_index), np.arange(70, 100))
        config.split = "random"
        _, random = data.load_from_config(config)
        self.assertEqual(
            (len(random.train_index), len(random.val_index), len(random.test_index)), (80, 10, 10)
        )
        self.assertFalse(set(random.test_index) <= set(range(70, 100)))

    def _config_for(self, name, **fields):
        config = config_lib.base_config()
        config.dataset, config.data_dir = name, self.tmp
        for key, value in fields.items():
            config[key] = value
        return config

    @parameterized.named_parameters(("random_split", None), ("carved_validation", 70))
    def test_split_seed_not_model_seed_decides_the_split(self, train_rows):
        x, y = toy(n=100)
        split = None if train_rows is None else np.r_[np.zeros(train_rows), np.ones(30)]
        arrays = {} if split is None else {"split": split.astype(np.int8)}
        save_raw_npz(self.path("s.npz"), X=x, Y=y, **arrays)
        runs = {
            (split_seed, seed): data.load_from_config(
                self._config_for("s", split_seed=split_seed, seed=seed, train_fraction=0.5)
            )[1]
            for split_seed, seed in ((1, 1), (1, 9), (2, 1))
        }
        for part in ("train_index", "val_index", "test_index"):
            np.testing.assert_array_equal(getattr(runs[1, 1], part), getattr(runs[1, 9], part))
        self.assertFalse(np.array_equal(runs[1, 1].val_index, runs[2, 1].val_index))
        self.assertFalse(np.array_equal(runs[1, 1].train_index, runs[2, 1].train_index))

    def test_synthetic_data_follow_split_seed(self):
        def synthetic_x(**seeds):
            config = config_lib.base_config()
            config.synthetic_examples, config.synthetic_features = 50, 4
            for key, value in seeds.items():
                config[key] = value
            return data.load_from_config(config)[0].x

        np.testing.assert_array_equal(synthetic_x(seed=1), synthetic_x(seed=5))
        self.assertFalse(np.array_equal(synthetic_x(split_seed=1), synthetic_x(split_seed=2)))

    def test_load_from_config_not_found_without_fetch(self):
        config = config_lib.base_config()
        config.dataset, config.data_dir = "nus_vec", self.tmp
        with self.assertRaisesRegex(data.DatasetNotFoundError, r"configs/demo\.py"):
            data.load_from_config(config)

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


class PrepareDataTest(TmpDirTest):
    def _run(self, *args):
        env = dict(os.environ, PYTHONPATH=REPO)
        return subprocess.run(
            [sys.executable, os.path.join(REPO, "launch", "prepare_data.py"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def test_converts_libsvm_to_npz(self):
        x, y = toy()
        y[3] = 0
        write_libsvm(self.path("in.txt"), x, y)
        result = self._run(f"--input={self.path('in.txt')}", f"--output={self.path('o.npz')}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("| in | 20 | 5 | 3 |", result.stdout)
        self.assertIn("rows without labels", result.stdout)
        self.assertIn("1 of 20 rows have no positive label", result.stderr)
        back = self.load_quiet(self.path("o.npz"))
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)

    def test_converts_csv_to_npz(self):
        x, y = toy()
        split = np.array([0] * 15 + [1] * 5)
        data_testing.write_csv(
            self.path("t.csv"), x, y, list("abcde"), ["y1", "y2", "y3"], split=split
        )
        out = self.path("t.npz")
        result = self._run(f"--input={self.path('t.csv')}", "--label_prefix=y", f"--output={out}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("| t | 20 | 5 | 3 |", result.stdout)
        back = self.load_quiet(out)
        np.testing.assert_array_equal(back.x, x)
        np.testing.assert_array_equal(back.y, y)
        np.testing.assert_array_equal(back.split, split)
        self.assertEqual(back.label_names, ("y1", "y2", "y3"))

    def test_bad_input_exits_with_message(self):
        result = self._run(f"--input={self.path('missing.arff')}")
        self.assertEqual(result.returncode, 1)
        self.assertIn("error: Data set", result.stderr)
        self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
    absltest.main()
