"""Downloading data sets into a local cache: checksums, unpacking, resume, offline reuse.

`fetch(name_or_url)` accepts

* a registry name (`REGISTRY`): the Mulan data sets of the shared collection (yeast, scene,
  emotions, enron, medical, bibtex, delicious) come from the Mulan repository on GitHub,
  pinned to commit `MULAN_COMMIT` (`NAME-train.arff`, `NAME-test.arff`, `NAME.xml`: the same
  files, train/test split and label header the shared npz were converted from); mirflickr and
  ebird come from the MPVAE tarball (`MPVAE_TARBALL`, the layout `NAME_data.npy` + index
  files);
* `openml:ID`: an OpenML data set by id (e.g. `openml:40597`, OpenML's multi-label yeast). Its
  description (`$CGMVAE_OPENML_API`, default `OPENML_API`) gives the ARFF URL and the label
  attributes (`default_target_attribute`), which are written beside the ARFF as a Mulan XML
  header so `load_dataset` finds them;
* any http(s) or file URL of a supported format or of an archive (.zip, .tar.gz, .tgz, .tar,
  .gz), which is unpacked.

Cache: `cache_dir`, else `$CGMVAE_DATA`, else `~/.cache/cgmvae_jax`. A registry name lands in
`{cache}/{name}/` (so `load_dataset(name, data_dir=cache)` finds it); a URL in
`{cache}/urls/{hash}/`. What is in the cache is reused without any network access. Downloads go
to `FILE.part` and are renamed only when complete and verified, so the cache never holds a
half file under its final name; an interrupted download is resumed with an HTTP Range request
when the server supports it, else restarted. A multi-file source is assembled in a staging
directory and renamed as a whole.

Checksums: `sha256` (hex) is checked for a single-file source. The registry's checksums are
None: the files could not be downloaded when the registry was written (no network), so
registry downloads are not verified; pass `sha256=` for a URL you trust.
"""

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from xml.sax import saxutils

try:
    import fcntl
except ImportError:  # not on POSIX: no inter-process lock
    fcntl = None

MULAN_COMMIT = "43f6389095ad71984264db4387a8074b22bc7d4a"
MULAN_BASE = f"https://raw.githubusercontent.com/tsoumakas/mulan/{MULAN_COMMIT}/data/multi-label"
MPVAE_TARBALL = "https://www.cs.cornell.edu/~junwen/data/MPVAE_data.tar.gz"
OPENML_API = "https://www.openml.org/api/v1/json"
_CHUNK = 1 << 16
_ARCHIVES = (".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")

log = logging.getLogger(__name__)


class FetchError(OSError):
    """A download failed (HTTP error, no network, truncated transfer, unpacking)."""


class ChecksumError(FetchError):
    """A downloaded file does not have the expected sha256."""


@dataclasses.dataclass(frozen=True)
class Source:
    """A fetchable data set.

    Attributes:
      files: (url, sha256 or None) of each file; all land in one directory.
      num_labels: the data set's label count (checked after loading).
      archive_member: for an archive source, the file inside it whose directory is returned.
      note: where the files come from.
    """

    files: tuple[tuple[str, str | None], ...]
    num_labels: int
    archive_member: str | None = None
    note: str = ""


def _mulan(name: str, num_labels: int) -> Source:
    files = tuple(
        (f"{MULAN_BASE}/{name}/{f}", None)
        for f in (f"{name}-train.arff", f"{name}-test.arff", f"{name}.xml")
    )
    return Source(files, num_labels, note=f"Mulan {name} train/test ARFF + XML @{MULAN_COMMIT[:8]}")


def _mpvae(name: str, num_labels: int) -> Source:
    return Source(
        ((MPVAE_TARBALL, None),),
        num_labels,
        archive_member=f"{name}_data.npy",
        note="MPVAE data tarball (NAME_data.npy + index files)",
    )


# Checksums are None: no network was available when this table was written (see above).
REGISTRY = {
    "yeast": _mulan("yeast", 14),
    "scene": _mulan("scene", 6),
    "emotions": _mulan("emotions", 6),
    "enron": _mulan("enron", 53),
    "medical": _mulan("medical", 45),
    "bibtex": _mulan("bibtex", 159),
    "delicious": _mulan("delicious", 983),
    "mirflickr": _mpvae("mirflickr", 38),
    "ebird": _mpvae("ebird", 100),
}

_WHERE = {
    "sider": (
        "the shared sider.npz (labels from MoleculeNet via chemprop's data/sider.csv, features "
        "rebuilt as element-presence vectors; see the shared datasets/README.md); MPVAE's own "
        f"version (d = 38) is distributed in the MPVAE tarball {MPVAE_TARBALL}"
    ),
    "reuters": (
        "the shared reuters.npz (Reuters-21578 ModApte split, our own bag-of-words features; "
        "see the shared datasets/README.md)"
    ),
    "nus_vec": (
        "not shipped: the MPVAE tarball "
        f"{MPVAE_TARBALL} (MPVAE layout) or Mulan's NUS-WIDE cVLAD+ ARFF "
        "(http://mulan.sourceforge.net/datasets-mlc.html)"
    ),
    "bookmarks": (
        "not shipped: Mulan's bookmarks.arff + bookmarks.xml "
        "(http://mulan.sourceforge.net/datasets-mlc.html), or the MPVAE tarball "
        f"{MPVAE_TARBALL}"
    ),
}


def where_to_get(name: str) -> str:
    """One-sentence hint on where to obtain data set `name`."""
    if name in REGISTRY and REGISTRY[name].archive_member is None:
        return (
            f"{name} is in the shared collection (../shared/datasets/{name}.npz) and on Mulan "
            f"({MULAN_BASE}/{name}/); --config.fetch=True or "
            f"cgmvae_jax.data.fetch({name!r}) downloads the Mulan files into the cache"
        )
    if name in REGISTRY:
        return (
            f"{name} is not shipped; it is in the MPVAE tarball {MPVAE_TARBALL} (unpack it and "
            f"point data_dir at the directory holding {name}/), or use --config.fetch=True"
        )
    if name in _WHERE:
        return f"{name}: {_WHERE[name]}"
    return (
        "convert your data to the project's npz with python launch/prepare_data.py "
        f"--input=FILE --output=DATA_DIR/{name}.npz (npz, MPVAE .npy, Mulan ARFF, libsvm "
        "and CSV/TSV with a header row are read)"
    )


def default_cache_dir() -> str:
    """`$CGMVAE_DATA` when set, else `~/.cache/cgmvae_jax`."""
    return os.environ.get("CGMVAE_DATA") or os.path.join(
        os.path.expanduser("~"), ".cache", "cgmvae_jax"
    )


def is_url(text: str) -> bool:
    return urllib.parse.urlparse(str(text)).scheme in ("http", "https", "file", "ftp")


def sha256_of(path: str) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: str):
    """Holds an exclusive inter-process lock on `path + '.lock'` (POSIX only)."""
    if fcntl is None:
        yield
        return
    with open(path + ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "cgmvae_jax-fetch"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(url: str, dest: str, *, sha256: str | None = None, timeout: float = 60.0) -> str:
    """Downloads `url` to `dest` through `dest + '.part'`, resuming a previous partial file.

    Returns:
      dest.

    Raises:
      FetchError: HTTP error, unreachable host or a transfer that ended early (the partial
        file is kept so that the next call resumes it).
      ChecksumError: the complete file does not match `sha256` (the partial file is deleted).
    """
    part = dest + ".part"
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable: start again
            os.remove(part)
            return download(url, dest, sha256=sha256, timeout=timeout)
        raise FetchError(
            f"download of {url} failed: HTTP {e.code} {e.reason}. Check the name or URL; to "
            f"work offline, put the file at {dest} yourself (fetch reuses it)."
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(
            f"could not reach {url} ({reason}). No network? Copy the file to {dest} by hand "
            "(fetch reuses it), or use the shared npz files."
        ) from None
    with response:
        status = getattr(response, "status", 200)
        content_range = response.headers.get("Content-Range", "")
        resumed = bool(offset) and status == 206 and content_range.startswith(f"bytes {offset}-")
        if offset and not resumed:
            log.info("%s: server does not resume; downloading from the start", url)
            offset = 0
        length = response.headers.get("Content-Length")
        expected = int(length) + offset if length is not None and length.isdigit() else None
        received = offset
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
        except (TimeoutError, http.client.IncompleteRead, ConnectionError, OSError) as e:
            raise FetchError(
                f"download of {url} stopped after {received} of {expected or '?'} bytes "
                f"({type(e).__name__}). The partial file {part} is kept; fetch again to resume."
            ) from None
    if expected is not None and received != expected:
        raise FetchError(
            f"download of {url} stopped after {received} of {expected} bytes (truncated "
            f"transfer). The partial file {part} is kept; fetch again to resume."
        )
    if sha256:
        actual = sha256_of(part)
        if actual != sha256.lower():
            os.remove(part)
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {actual}. "
                "The download is corrupt or the file changed upstream; nothing was cached. Fix: "
                "fetch again, or pass the new checksum if you trust the new file."
            )
    os.replace(part, dest)
    return dest


def _cached_file(dest: str, sha256: str | None) -> bool:
    if not os.path.isfile(dest):
        return False
    if sha256 and sha256_of(dest) != sha256.lower():
        log.warning("%s: cached file does not match sha256 %s; downloading again", dest, sha256)
        os.remove(dest)
        return False
    return True


def _archive_kind(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")):
        return "tar"
    if lower.endswith(".gz"):
        return "gz"
    return None


def _strip_archive_ext(name: str) -> str:
    lower = name.lower()
    for ext in (*_ARCHIVES, ".gz"):
        if lower.endswith(ext):
            return name[: -len(ext)]
    return name


def unpack(path: str) -> str:
    """Unpacks an archive next to it (once) and returns the unpacked file or directory.

    `.gz` (not tar) gives the decompressed file; `.zip` / `.tar*` give a directory, or its
    single top-level entry. Unpacking goes to a temporary name that is renamed when complete.
    """
    kind = _archive_kind(path)
    if kind is None:
        return path
    target = _strip_archive_ext(path)
    if not os.path.exists(target):
        parent = os.path.dirname(path)
        try:
            if kind == "gz":
                fd, tmp = tempfile.mkstemp(prefix=".unpack-", dir=parent)
                try:
                    with os.fdopen(fd, "wb") as out, gzip.open(path, "rb") as src:
                        shutil.copyfileobj(src, out)
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.remove(tmp)
            else:
                tmp = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
                try:
                    if kind == "zip":
                        with zipfile.ZipFile(path) as z:
                            for member in z.namelist():
                                norm = os.path.normpath(member)
                                if norm.startswith("..") or os.path.isabs(norm):
                                    raise FetchError(f"{path}: unsafe member path {member!r}")
                            z.extractall(tmp)
                    else:
                        with tarfile.open(path) as t:
                            if hasattr(tarfile, "data_filter"):
                                t.extractall(tmp, filter="data")
                            else:  # pragma: no cover - Python without extraction filters
                                for m in t.getmembers():
                                    norm = os.path.normpath(m.name)
                                    if norm.startswith("..") or os.path.isabs(norm):
                                        raise FetchError(f"{path}: unsafe member path {m.name!r}")
                                t.extractall(tmp)
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        shutil.rmtree(tmp)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
            if isinstance(e, FetchError):
                raise
            raise FetchError(
                f"{path}: cannot unpack ({type(e).__name__}: {e}). The archive is corrupt; "
                "delete it and fetch again."
            ) from None
    if os.path.isdir(target):
        entries = [e for e in os.listdir(target) if not e.startswith(".")]
        if len(entries) == 1:
            return os.path.join(target, entries[0])
    return target


def _url_basename(url: str) -> str:
    base = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in base)


def _cached_download(url: str, dest: str, sha256: str | None, timeout: float) -> str:
    """`dest`, downloaded from `url` unless a copy (matching `sha256`, when given) is there."""
    if not _cached_file(dest, sha256):
        log.info("fetching %s", url)
        download(url, dest, sha256=sha256, timeout=timeout)
    return dest


def _fetch_and_unpack(url: str, directory: str, sha256: str | None, timeout: float) -> str:
    """Downloads `url` into `directory` once (under a lock) and returns what it unpacks to."""
    os.makedirs(directory, exist_ok=True)
    dest = os.path.join(directory, _url_basename(url))
    with _locked(dest):
        return unpack(_cached_download(url, dest, sha256, timeout))


def _fetch_files(source: Source, final: str, timeout: float) -> str:
    """Downloads all files of `source` into a staging directory, then renames it to `final`."""
    staging = os.path.join(os.path.dirname(final), "." + os.path.basename(final) + ".partial")
    os.makedirs(staging, exist_ok=True)
    for url, sha in source.files:
        _cached_download(url, os.path.join(staging, _url_basename(url)), sha, timeout)
    os.replace(staging, final)
    return final


def _find_member(root: str, member: str) -> str | None:
    for directory, _, files in os.walk(root):
        if member in files:
            return directory
    return None


def _fetch_archive_source(name: str, source: Source, cache: str, timeout: float) -> str:
    ((url, sha),) = source.files
    unpacked = _fetch_and_unpack(url, os.path.join(cache, "archives"), sha, timeout)
    root = unpacked if os.path.isdir(unpacked) else os.path.dirname(unpacked)
    found = _find_member(root, source.archive_member)
    if found is None:
        raise FetchError(
            f"{url} was unpacked into {root} but holds no {source.archive_member}; {name} is "
            "not in this archive. Fix: find the data set's files and pass their directory."
        )
    return found


def _fetch_openml(data_id: str, cache: str, timeout: float) -> str:
    if not data_id.isdigit():
        raise ValueError(f"openml:{data_id}: an OpenML data set is fetched by numeric id.")
    final = os.path.join(cache, f"openml-{data_id}")
    with _locked(final):
        if not os.path.isdir(final):
            api = os.environ.get("CGMVAE_OPENML_API", OPENML_API).rstrip("/")
            desc_url = f"{api}/data/{data_id}"
            try:
                with _open(desc_url, 0, timeout) as response:
                    description = json.loads(response.read().decode("utf-8"))
                info = description["data_set_description"]
                url, name = info["url"], info["name"]
            except urllib.error.HTTPError as e:
                raise FetchError(
                    f"OpenML description {desc_url}: HTTP {e.code} {e.reason}"
                ) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                raise FetchError(f"could not reach {desc_url} ({e}). No network?") from None
            except (ValueError, KeyError, TypeError) as e:
                raise FetchError(f"{desc_url}: unexpected OpenML answer ({e!r}).") from None
            safe = _url_basename(name)
            staging = os.path.join(cache, f".openml-{data_id}.partial")
            os.makedirs(staging, exist_ok=True)
            _cached_download(url, os.path.join(staging, f"{safe}.arff"), None, timeout)
            targets = [
                t.strip() for t in str(info.get("default_target_attribute") or "").split(",")
            ]
            targets = [t for t in targets if t]
            if targets:
                labels = "\n".join(
                    f"  <label name={saxutils.quoteattr(t)}></label>" for t in targets
                )
                with open(os.path.join(staging, f"{safe}.xml"), "w", encoding="utf-8") as f:
                    f.write(
                        '<?xml version="1.0" encoding="utf-8"?>\n'
                        f'<labels xmlns="http://mulan.sourceforge.net/labels">\n{labels}\n'
                        "</labels>\n"
                    )
            os.replace(staging, final)
    arffs = sorted(e for e in os.listdir(final) if e.endswith(".arff"))
    return os.path.join(final, arffs[0]) if len(arffs) == 1 else final


def fetch(
    name_or_url: str,
    sha256: str | None = None,
    cache_dir: str | None = None,
    *,
    timeout: float = 60.0,
) -> str:
    """Downloads a data set into the cache (or finds it there) and returns its local path.

    Args:
      name_or_url: a `REGISTRY` name, `openml:ID`, or a URL.
      sha256: expected hex sha256 of the downloaded file (single-file sources only).
      cache_dir: cache directory; default `$CGMVAE_DATA`, else `~/.cache/cgmvae_jax`.
      timeout: seconds per network operation.

    Returns:
      Path to pass to `load_dataset`: the data set's directory (registry names, archives) or
      file.

    Raises:
      FetchError: download failure (HTTP status, no network, truncated transfer, bad archive).
      ChecksumError: sha256 mismatch.
      ValueError: an unknown name.
    """
    cache = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
    try:
        os.makedirs(cache, exist_ok=True)
        writable = os.access(cache, os.W_OK)
    except OSError as e:
        writable, why = False, str(e)
    else:
        why = "not writable"
    if not writable:
        raise FetchError(
            f"cannot use the cache directory {cache} ({why}). Pass cache_dir=... or set "
            "CGMVAE_DATA to a writable directory."
        )
    key = str(name_or_url)
    if key.startswith("openml:"):
        return _fetch_openml(key.split(":", 1)[1], cache, timeout)
    if key in REGISTRY:
        source = REGISTRY[key]
        if sha256 is not None:
            if len(source.files) != 1:
                raise ValueError(
                    f"fetch({key!r}, sha256=...): {key} has {len(source.files)} files; a single "
                    "sha256 applies to single-file sources only."
                )
            source = dataclasses.replace(source, files=((source.files[0][0], sha256),))
        if source.archive_member is not None:
            return _fetch_archive_source(key, source, cache, timeout)
        final = os.path.join(cache, key)
        with _locked(final):
            if os.path.isdir(final):
                return final
            return _fetch_files(source, final, timeout)
    if is_url(key):
        directory = os.path.join(cache, "urls", hashlib.sha256(key.encode()).hexdigest()[:12])
        return _fetch_and_unpack(key, directory, sha256, timeout)
    raise ValueError(
        f"fetch: {key!r} is not a known data set name ({', '.join(sorted(REGISTRY))}), an "
        "'openml:ID' or a URL."
    )
