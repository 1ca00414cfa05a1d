"""Tests of cgmvae_jax.data.fetch against an http.server on 127.0.0.1 started by the test.

No internet is used: registry entries and the OpenML API are pointed at the local server.
"""

import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import tarfile
import tempfile
import threading
import warnings
import zipfile
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from cgmvae_jax import config_lib, data
from cgmvae_jax.data import fetching

TRAIN_ARFF = (
    "@relation toy\n@attribute a numeric\n@attribute b numeric\n@attribute L1 {0,1}\n"
    "@attribute L2 {0,1}\n@data\n1.5,2,1,0\n0,1,0,1\n3,-1,1,1\n"
)
TEST_ARFF = (
    "@relation toy\n@attribute a numeric\n@attribute b numeric\n@attribute L1 {0,1}\n"
    "@attribute L2 {0,1}\n@data\n2,2,0,1\n-1,0,1,0\n"
)
XML = (
    '<?xml version="1.0" encoding="utf-8"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">'
    '<label name="L1"></label><label name="L2"></label></labels>\n'
)
OPENML_ARFF = TRAIN_ARFF.replace("{0,1}", "{FALSE,TRUE}").replace(
    "@data\n1.5,2,1,0\n0,1,0,1\n3,-1,1,1\n", "@data\n1.5,2,TRUE,FALSE\n0,1,FALSE,TRUE\n"
)


def _npz_bytes():
    buf = io.BytesIO()
    np.savez(
        buf,
        X=np.arange(12, dtype=np.float32).reshape(4, 3),
        Y=np.array([[1, 0], [0, 1], [1, 1], [1, 0]], np.uint8),
    )
    return buf.getvalue()


def _zip_bytes(name, payload):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, payload)
    return buf.getvalue()


def _tar_gz_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


BIG = bytes(range(256)) * 400  # 102400 bytes


class _Server:
    """A threaded HTTP server with files, Range support and failure modes.

    Paths: /files/NAME (Range honoured), /norange/NAME (Range ignored), /truncated/NAME
    (sends half of the announced Content-Length), /flaky/NAME (the first request is truncated,
    later ones honour Range), /openml/data/ID (JSON description); anything else is 404.
    """

    def __init__(self, files):
        self.files = dict(files)
        self.requests = []  # (path, Range header)
        self.flaky_seen = set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                kind, _, name = self.path.lstrip("/").partition("/")
                if kind == "openml" and name.startswith("data/"):
                    body = json.dumps(
                        {
                            "data_set_description": {
                                "name": "toy ml",
                                "url": f"{server.url}/files/openml.arff",
                                "default_target_attribute": "L1,L2",
                            }
                        }
                    ).encode()
                    return self._send(200, body)
                payload = server.files.get(name)
                if payload is None or kind not in ("files", "norange", "truncated", "flaky"):
                    return self._send(404, b"not found")
                if kind == "truncated" or (kind == "flaky" and name not in server.flaky_seen):
                    server.flaky_seen.add(name)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                range_header = self.headers.get("Range")
                if range_header and kind in ("files", "flaky"):
                    start = int(range_header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}"
                    )
                    self.send_header("Content-Length", str(len(payload) - start))
                    self.end_headers()
                    self.wfile.write(payload[start:])
                    return None
                return self._send(200, payload)

            def _send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


FILES = {
    "big.bin": BIG,
    "toy.npz": _npz_bytes(),
    "toy.zip": _zip_bytes("toy.npz", _npz_bytes()),
    "toy.tar.gz": _tar_gz_bytes(
        {
            "pack/toy-train.arff": TRAIN_ARFF.encode(),
            "pack/toy-test.arff": TEST_ARFF.encode(),
            "pack/toy.xml": XML.encode(),
        }
    ),
    "toy.arff.gz": gzip.compress(TRAIN_ARFF.encode()),
    "toy-train.arff": TRAIN_ARFF.encode(),
    "toy-test.arff": TEST_ARFF.encode(),
    "toy.xml": XML.encode(),
    "openml.arff": OPENML_ARFF.encode(),
    "broken.zip": b"PK\x03\x04 this is not a zip archive",
}


def sha(payload):
    return hashlib.sha256(payload).hexdigest()


class FetchTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = _Server(FILES)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.cache = tempfile.mkdtemp(prefix="fetch_test-")
        self.addCleanup(shutil.rmtree, self.cache, ignore_errors=True)
        self.server.requests.clear()

    def url(self, kind, name):
        return f"{self.server.url}/{kind}/{name}"

    def assert_no_partial_final(self, final_name):
        for directory, _, files in os.walk(self.cache):
            self.assertNotIn(final_name, files, f"half file under its final name in {directory}")

    def test_success_with_checksum(self):
        path = data.fetch(self.url("files", "big.bin"), sha256=sha(BIG), cache_dir=self.cache)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BIG)
        self.assertTrue(path.startswith(self.cache))
        self.assertFalse(os.path.exists(path + ".part"))

    def test_checksum_mismatch(self):
        with self.assertRaisesRegex(
            data.ChecksumError,
            r"checksum mismatch for .*big\.bin: "
            r"expected sha256 0{64}, got " + sha(BIG),
        ):
            data.fetch(self.url("files", "big.bin"), sha256="0" * 64, cache_dir=self.cache)
        self.assert_no_partial_final("big.bin")
        self.assert_no_partial_final("big.bin.part")

    def test_truncated_transfer(self):
        with self.assertRaisesRegex(data.FetchError, r"stopped after 51200 of 102400 bytes"):
            data.fetch(self.url("truncated", "big.bin"), cache_dir=self.cache)
        self.assert_no_partial_final("big.bin")

    def test_interrupted_download_resumes_with_range(self):
        url = self.url("flaky", "big.bin")
        with self.assertRaisesRegex(data.FetchError, r"kept; fetch again to resume"):
            data.fetch(url, cache_dir=self.cache)
        self.assert_no_partial_final("big.bin")
        path = data.fetch(url, sha256=sha(BIG), cache_dir=self.cache)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BIG)
        self.assertEqual(self.server.requests[-1], ("/flaky/big.bin", "bytes=51200-"))

    def test_restart_when_server_ignores_range(self):
        url = self.url("norange", "big.bin")
        directory = os.path.join(self.cache, "urls", hashlib.sha256(url.encode()).hexdigest()[:12])
        os.makedirs(directory)
        with open(os.path.join(directory, "big.bin.part"), "wb") as f:
            f.write(b"garbage from an old attempt")
        path = data.fetch(url, sha256=sha(BIG), cache_dir=self.cache)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), BIG)

    def test_404(self):
        with self.assertRaisesRegex(data.FetchError, r"HTTP 404"):
            data.fetch(self.url("files", "missing.arff"), cache_dir=self.cache)
        self.assert_no_partial_final("missing.arff")

    def test_cache_hit_without_network(self):
        server = _Server(FILES)
        url = f"{server.url}/files/toy.npz"
        first = data.fetch(url, cache_dir=self.cache)
        server.stop()
        second = data.fetch(url, sha256=sha(FILES["toy.npz"]), cache_dir=self.cache)
        self.assertEqual(first, second)
        self.assertEqual(data.load_dataset(second).num_examples, 4)

    def test_unreachable_server(self):
        server = _Server(FILES)
        url = f"{server.url}/files/toy.npz"
        server.stop()
        with self.assertRaisesRegex(data.FetchError, r"could not reach .*No network"):
            data.fetch(url, cache_dir=self.cache, timeout=5)

    def test_zip_is_unpacked(self):
        path = data.fetch(self.url("files", "toy.zip"), cache_dir=self.cache)
        self.assertTrue(path.endswith("toy.npz"))
        ds = data.load_dataset(path)
        self.assertEqual((ds.num_examples, ds.num_labels), (4, 2))

    def test_tar_gz_train_test_directory_is_unpacked(self):
        path = data.fetch(self.url("files", "toy.tar.gz"), cache_dir=self.cache)
        ds = data.load_dataset(path)
        self.assertEqual(ds.split.tolist(), [0, 0, 0, 1, 1])
        self.assertEqual(ds.label_names, ("L1", "L2"))

    def test_gz_file_is_decompressed(self):
        path = data.fetch(self.url("files", "toy.arff.gz"), cache_dir=self.cache)
        self.assertTrue(path.endswith("toy.arff"))
        self.assertEqual(data.load_dataset(path, num_labels=2).num_examples, 3)

    def test_corrupt_archive(self):
        with self.assertRaisesRegex(data.FetchError, r"broken\.zip: cannot unpack"):
            data.fetch(self.url("files", "broken.zip"), cache_dir=self.cache)

    def _toy_registry(self):
        files = tuple(
            (self.url("files", n), sha(FILES[n]))
            for n in ("toy-train.arff", "toy-test.arff", "toy.xml")
        )
        return {"toy": fetching.Source(files, num_labels=2)}

    def test_registry_name_lands_in_cache_by_name(self):
        with mock.patch.dict(fetching.REGISTRY, self._toy_registry()):
            path = data.fetch("toy", cache_dir=self.cache)
            self.assertEqual(path, os.path.join(self.cache, "toy"))
            ds = data.load_dataset("toy", self.cache)  # found by name in the cache
            self.assertEqual(ds.split.tolist(), [0, 0, 0, 1, 1])
            np.testing.assert_array_equal(ds.y, [[1, 0], [0, 1], [1, 1], [0, 1], [1, 0]])
            count = len(self.server.requests)
            self.assertEqual(data.fetch("toy", cache_dir=self.cache), path)
            self.assertLen(self.server.requests, count)  # served from the cache

    def test_registry_failure_leaves_no_dataset_directory(self):
        registry = self._toy_registry()
        source = registry["toy"]
        broken = (
            (self.url("files", "toy-train.arff"), None),
            (self.url("files", "gone.xml"), None),
        )
        registry["toy"] = fetching.Source(broken, source.num_labels)
        with mock.patch.dict(fetching.REGISTRY, registry):
            with self.assertRaisesRegex(data.FetchError, r"HTTP 404"):
                data.fetch("toy", cache_dir=self.cache)
        self.assertFalse(os.path.exists(os.path.join(self.cache, "toy")))

    @parameterized.named_parameters(("empty_data_dir", True), ("missing_data_dir", False))
    def test_load_from_config_fetches_when_missing(self, data_dir_exists):
        config = config_lib.base_config()
        config.dataset = "toy"
        config.data_dir = os.path.join(self.cache, "local")
        if data_dir_exists:
            os.makedirs(config.data_dir)
        config.val_fraction = 0.5
        with (
            mock.patch.dict(fetching.REGISTRY, self._toy_registry()),
            mock.patch.dict(os.environ, {"CGMVAE_DATA": self.cache}),
        ):
            with self.assertRaises(data.DatasetNotFoundError):
                data.load_from_config(config)  # fetch is off by default
            config.fetch = True
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", data.DataWarning)
                ds, splits = data.load_from_config(config)
        self.assertEqual(ds.num_examples, 5)
        self.assertLen(splits.test_index, 2)
        self.assertTrue(os.path.isdir(os.path.join(self.cache, "toy")))

    def test_load_from_config_reports_failed_download(self):
        config = config_lib.base_config()
        config.dataset, config.fetch = "toy", True
        config.data_dir = self.cache
        registry = {"toy": fetching.Source(((self.url("files", "gone.arff"), None),), 2)}
        with (
            mock.patch.dict(fetching.REGISTRY, registry),
            mock.patch.dict(os.environ, {"CGMVAE_DATA": self.cache}),
        ):
            with self.assertRaisesRegex(
                data.DatasetNotFoundError,
                r"(?s)not found.*Downloading it "
                r"\(--config\.fetch=True\) failed: .*HTTP 404",
            ):
                data.load_from_config(config)

    def test_openml_by_id_writes_label_header(self):
        with mock.patch.dict(os.environ, {"CGMVAE_OPENML_API": f"{self.server.url}/openml"}):
            path = data.fetch("openml:42", cache_dir=self.cache)
        self.assertTrue(path.endswith(os.path.join("openml-42", "toy_ml.arff")))
        ds = data.load_dataset(path)
        self.assertEqual(ds.label_names, ("L1", "L2"))
        np.testing.assert_array_equal(ds.y, [[1, 0], [0, 1]])
        self.assertEqual(ds.feature_names, ("a", "b"))

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, r"'nope' is not a known data set name"):
            data.fetch("nope", cache_dir=self.cache)

    def test_registry_urls_and_label_counts(self):
        self.assertIn("yeast", data.REGISTRY)
        self.assertEqual(data.REGISTRY["yeast"].num_labels, 14)
        self.assertEqual(data.REGISTRY["mirflickr"].archive_member, "mirflickr_data.npy")
        for source in data.REGISTRY.values():
            for url, _ in source.files:
                self.assertTrue(url.startswith("https://"), url)


if __name__ == "__main__":
    absltest.main()
