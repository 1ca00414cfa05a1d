"""What the data-layer tests share: small clean arrays, independent file writers, a temp dir.

The writers below produce ARFF, libsvm and CSV text without the library's code, so a round
trip through `load_dataset` checks the readers against an independent implementation. The
shared data sets come from `tests.helpers.shared_data_dir()`; tests that need them skip with
`helpers.NO_SHARED_DATA`.
"""

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from xml.sax import saxutils

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import data
from tests import helpers


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


def xml_text(label_names):
    """A Mulan XML label header naming `label_names`."""
    body = "".join(f"  <label name={saxutils.quoteattr(str(n))}></label>\n" for n in label_names)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<labels xmlns="http://mulan.sourceforge.net/labels">\n{body}</labels>\n'
    )


def write_xml(path, label_names):
    with open(path, "w", encoding="utf-8") as f:
        f.write(xml_text(label_names))


def write_libsvm(path, x, y, *, header=True, base=0):
    """Writes Extreme Classification text: optional header `n F L`, rows `l1,l2 i:v ...`."""
    lines = [f"{x.shape[0]} {x.shape[1]} {y.shape[1]}"] if header else []
    for xi, yi in zip(x, y, strict=True):
        labels = ",".join(str(j) for j in np.nonzero(yi)[0])
        feats = " ".join(f"{j + base}:{float(xi[j])!r}" for j in np.nonzero(xi)[0])
        lines.append(f"{labels} {feats}".strip() if labels else feats)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def write_csv(path, x, y, feature_names, label_names, *, split=None, delimiter=","):
    """Writes a header row, then features, labels and an optional split word per row."""
    words = {0: "train", 1: "test", 2: "val"}
    header = [*feature_names, *label_names] + (["split"] if split is not None else [])
    lines = [delimiter.join(header)]
    for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
        cells = [repr(float(v)) for v in xi] + [str(int(v)) for v in yi]
        if split is not None:
            cells.append(words[int(split[i])])
        lines.append(delimiter.join(cells))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


@functools.cache
def _shared_dataset(directory, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.DataWarning)
        return data.load_dataset(name, directory)


def shared(name):
    """A shared data set, loaded once per test process (its warnings are tested elsewhere)."""
    directory = helpers.shared_data_dir()
    if directory is None:
        raise absltest.SkipTest(helpers.NO_SHARED_DATA)
    return _shared_dataset(directory, name)


def run_prepare_data(*args):
    """Runs launch/prepare_data.py in a subprocess that imports this checkout's package."""
    env = dict(os.environ, PYTHONPATH=helpers.REPO)
    return subprocess.run(
        [sys.executable, os.path.join(helpers.REPO, "launch", "prepare_data.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


class TmpDirTest(parameterized.TestCase):
    """A fresh temporary directory per test, with small file helpers."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="data_test-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def path(self, *parts):
        p = os.path.join(self.tmp, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, name, content):
        """Writes text or bytes to `name` under the temp dir; returns the path."""
        path = self.path(*name.split("/"))
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(path, mode) as f:
            f.write(content)
        return path

    def assert_load_error(self, files, pattern, load=None, **kwargs):
        """Writes `files` ({name: text or bytes}), loads `load` (default: the first file) and
        checks that a ValueError matching `pattern` is raised."""
        for name, content in files.items():
            self.write(name, content)
        with self.assertRaisesRegex(ValueError, pattern):
            data.load_dataset(self.path(load or next(iter(files))), **kwargs)

    def load_quiet(self, *args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", data.DataWarning)
            return data.load_dataset(*args, **kwargs)
