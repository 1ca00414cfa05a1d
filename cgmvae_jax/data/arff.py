"""Mulan / MEKA ARFF files, dense or sparse (`{index value, ...}` rows), read with liac-arff.

The label attributes are, in order: the Mulan XML label header (`ReadOptions.xml_path`, or
`STEM.xml` beside the file, where `STEM-train.arff` also looks for `STEM.xml`); `num_labels`
with `label_location` "end" (the last L attributes, Mulan's habit) or "start" (the first L,
MEKA's); a MEKA `-C L` option in `@relation` (L > 0: first L, L < 0: last |L|). When two sources
are present, their label counts must agree. Nominal attributes whose values are numbers read as
those numbers; true/false and yes/no read as 1/0; implicit (omitted) sparse values are 0, or a
nominal attribute's first declared value.
"""

import os
import re
from xml.etree import ElementTree

import arff as liac_arff  # the liac-arff package (an absolute import, not this module)
import numpy as np

from cgmvae_jax.data import dataset as dataset_lib
from cgmvae_jax.data import reading, validation

EXTENSIONS = (".arff",)
_MEKA_RE = re.compile(r"(?:^|\s)-C\s+(-?\d+)")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


def read_mulan_xml(path: str) -> tuple[str, ...]:
    """Label names from a Mulan XML label header (`<labels><label name="..."/>...`)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as e:
        raise ValueError(
            f"{path}: not a readable Mulan XML label header ({e}). The file may be truncated. "
            "Fix: download it again, or pass num_labels=L instead."
        ) from None
    names = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "label":
            label = element.get("name")
            if not label:
                raise ValueError(f"{path}: a <label> element has no name attribute.")
            names.append(label)
    if not names:
        raise ValueError(f"{path}: the XML label header lists no <label name=...> element.")
    return validation.check_names(names, expected=len(names), kind="label", source=path)


def xml_candidates(arff_path: str) -> list[str]:
    """Where a Mulan XML header for `arff_path` is looked for (`STEM.xml`, then the part's)."""
    directory = os.path.dirname(arff_path)
    stems = dict.fromkeys((reading.file_stem(arff_path), reading.part_stem(arff_path)))
    return [os.path.join(directory, stem + ".xml") for stem in stems]


def _value_map(values, attr: str, column: int, source: str) -> dict:
    """Nominal value -> number, or ValueError when the values are not numbers or booleans."""
    mapping = {}
    try:
        for v in values:
            mapping[v] = float(v)
        return mapping
    except ValueError:
        pass
    lowered = {v: str(v).strip().lower() for v in values}
    if all(low in _TRUE | _FALSE for low in lowered.values()):
        return {v: (1.0 if low in _TRUE else 0.0) for v, low in lowered.items()}
    raise ValueError(
        f"{source}: attribute {attr!r} (column {column}) is nominal with values "
        f"{{{', '.join(map(str, values))}}}; only numeric, 0/1 and true/false or yes/no nominal "
        "attributes can be read. Fix: one-hot encode or drop it before loading."
    )


def _bad_cell(name: str, j: int, kind, value: str) -> str | None:
    """Why `value` does not fit attribute `name` (column j), or None when it fits."""
    if value in ("?", ""):
        return None
    if isinstance(kind, (list, tuple)):
        if value not in kind:
            return (
                f"column {j} (attribute {name!r}) has value {value!r}, not one of "
                f"{{{', '.join(map(str, kind))}}}"
            )
        return None
    try:
        float(value)
    except ValueError:
        return f"column {j} (attribute {name!r}) has value {value!r}, not a number"
    return None


def _row_detail(lines, line: int, attributes) -> str:
    """Best-effort description of what is wrong with data line `line` (1-based)."""
    if not attributes or not 1 <= line <= len(lines):
        return ""
    raw = lines[line - 1].strip()
    cells = []
    if raw.startswith("{"):
        for pair in raw.strip("{} ").split(","):
            index, _, value = pair.strip().partition(" ")
            if not index.isdigit():
                continue
            if int(index) >= len(attributes):
                return f"column index {index} but the header declares {len(attributes)} attributes"
            cells.append((int(index), value.strip().strip("'\"")))
    else:
        cells = [(j, v.strip().strip("'\"")) for j, v in enumerate(raw.split(","))]
    for j, value in cells:
        if j < len(attributes):
            problem = _bad_cell(attributes[j][0], j, attributes[j][1], value)
            if problem:
                return problem
    if not raw.startswith("{") and len(cells) != len(attributes):
        return f"the row has {len(cells)} values but the header declares {len(attributes)}"
    return ""


def _arff_error(path: str, error, decoder, row: int, lines=(), attributes=()) -> ValueError:
    line = getattr(error, "line", -1)
    if line is None or line < 0:
        line = getattr(decoder, "_current_line", -1)
        error.line = line
    where = f"line {line}" + (f" (data row {row})" if row >= 0 else "")
    try:
        text = str(error).rstrip(".")
    except TypeError:  # a message without a line placeholder
        text = type(error).__name__
    detail = _row_detail(lines, line, attributes) if row >= 0 else ""
    if detail:
        text = f"{detail} ({text})"
    return ValueError(
        f"{path}: {where}: {text}. The ARFF file is malformed or truncated (a row with "
        "missing values, an undeclared nominal value, or a cut-off last line). Fix: repair or "
        "download the file again."
    )


def _read_table(path: str):
    """Returns (relation, attributes, matrix [n, A] float64 or float32) of an ARFF file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e}); is this an ARFF file?") from None
    sparse = False
    in_data = False
    for line in text.split("\n"):
        s = line.strip()
        if not s or s.startswith("%"):
            continue
        if in_data:
            sparse = s.startswith("{")
            break
        if s.upper().startswith("@DATA"):
            in_data = True
    attempt = [liac_arff.LOD_GEN, liac_arff.DENSE_GEN] if sparse else [liac_arff.DENSE_GEN]
    attributes = []
    for k, return_type in enumerate(attempt):
        decoder = liac_arff.ArffDecoder()
        row = -1
        try:
            obj = decoder.decode(text, return_type=return_type)
            attributes = list(obj["attributes"])
            relation = obj.get("relation", "")
            converters = _arff_converters(attributes, path)
            if return_type == liac_arff.LOD_GEN:
                matrix = _sparse_rows(obj["data"], attributes, converters, path)
            else:
                matrix = _dense_rows(obj["data"], attributes, converters, path)
            return relation, attributes, matrix
        except liac_arff.ArffException as e:
            raise _arff_error(path, e, decoder, row) from None
        except _RowError as e:
            if isinstance(e.error, liac_arff.BadLayout) and k + 1 < len(attempt):
                continue  # a dense row among sparse rows: read again with the dense reader
            lines = text.strip("\r\n ").replace("\r\n", "\n").split("\n")  # as liac-arff counts
            raise _arff_error(path, e.error, decoder, e.row, lines, attributes) from None
    raise AssertionError("unreachable")


class _RowError(Exception):
    def __init__(self, error, row):
        super().__init__(str(error))
        self.error = error
        self.row = row


def _arff_converters(attributes, path):
    converters = []
    for j, (attr, kind) in enumerate(attributes):
        if isinstance(kind, (list, tuple)):
            converters.append(_value_map(kind, attr, j, path))
        elif str(kind).upper() in ("NUMERIC", "REAL", "INTEGER"):
            converters.append(None)
        else:
            raise ValueError(
                f"{path}: attribute {attr!r} (column {j}) has type {kind}; only numeric and "
                "nominal attributes can be read. Fix: drop or encode it before loading."
            )
    return converters


def _dense_rows(rows, attributes, converters, path):
    nominal = [(j, m) for j, m in enumerate(converters) if m is not None]
    out = []
    try:
        for values in rows:
            values = list(values)
            for j, mapping in nominal:
                v = values[j]
                if v is not None:
                    values[j] = mapping[v]
            if None in values:
                values = [np.nan if v is None else v for v in values]
            out.append(np.asarray(values, dtype=np.float64))
    except Exception as e:
        if type(e).__module__ == "arff":
            raise _RowError(e, len(out)) from None
        raise
    if not out:
        return np.zeros((0, len(attributes)), np.float64)
    return np.stack(out)


def _sparse_rows(rows, attributes, converters, path):
    num_attr = len(attributes)
    default = np.zeros(num_attr, np.float64)
    for j, (_, kind) in enumerate(attributes):
        if converters[j] is not None:
            default[j] = converters[j][kind[0]]
    rr, cc, vv = [], [], []
    n = 0
    try:
        for values in rows:
            for j, v in values.items():
                m = converters[j]
                rr.append(n)
                cc.append(j)
                vv.append(np.nan if v is None else (m[v] if m is not None else v))
            n += 1
    except Exception as e:
        if type(e).__module__ == "arff":
            raise _RowError(e, n) from None
        raise
    vals = np.asarray(vv, np.float64)
    rows_a = np.asarray(rr, np.int64)
    cols_a = np.asarray(cc, np.int64)
    big = ~np.isfinite(vals) | (np.abs(np.nan_to_num(vals)) > np.finfo(np.float32).max)
    if np.any(big):
        k = int(np.nonzero(big)[0][0])
        r, j = int(rows_a[k]), int(cols_a[k])
        raise ValueError(
            f"{path}: value {validation.scalar_text(vals[k])} at row {r}, column {j} (attribute "
            f"{attributes[j][0]!r}) is missing, NaN, infinite or outside the float32 range. "
            "Fix: impute or drop it before loading (nothing is repaired automatically)."
        )
    matrix = np.empty((n, num_attr), np.float32)
    matrix[:] = default.astype(np.float32)
    matrix[rows_a, cols_a] = vals
    return matrix


def _xml_label_columns(path, names, xml_file, num_labels) -> list[int]:
    """Columns of the labels named by a Mulan XML header."""
    xml_labels = read_mulan_xml(xml_file)
    position = {a: j for j, a in enumerate(names)}
    missing = [lab for lab in xml_labels if lab not in position]
    if missing:
        raise ValueError(
            f"{xml_file} names {len(xml_labels)} labels but {path} has no attribute "
            f"{missing[0]!r} ({len(missing)} missing; the ARFF has {len(names)} attributes). "
            "Fix: use the XML that belongs to this ARFF file."
        )
    if num_labels and num_labels != len(xml_labels):
        raise ValueError(
            f"{xml_file} names {len(xml_labels)} labels but num_labels={num_labels}. Fix: "
            "drop num_labels (the XML header decides) or make them agree."
        )
    return sorted(position[lab] for lab in xml_labels)


def _counted_label_columns(path, num_attr, count, at_end, origin) -> list[int]:
    """The last (`at_end`) or first `count` of `num_attr` columns."""
    if count >= num_attr:
        raise ValueError(
            f"{path}: {origin} asks for {count} labels but the file has only {num_attr} "
            "attributes (at least one must be a feature)."
        )
    return list(range(num_attr - count, num_attr)) if at_end else list(range(count))


def label_columns(path, attributes, relation, options) -> tuple[np.ndarray, str]:
    """(the label attributes' columns, where that came from); see the module docstring."""
    names = [a for a, _ in attributes]
    num_attr, num_labels = len(names), options.num_labels
    xml_file = options.xml_path
    if xml_file is None:
        xml_file = next((p for p in xml_candidates(path) if os.path.exists(p)), None)
    elif not os.path.exists(xml_file):
        raise ValueError(f"{xml_file}: the XML label header given for {path} does not exist.")
    meka = _MEKA_RE.search(relation or "")
    meka_count = int(meka.group(1)) if meka else 0
    if xml_file is not None:
        cols = _xml_label_columns(path, names, xml_file, num_labels)
        origin = f"XML header {xml_file}"
    elif num_labels:
        if meka_count and abs(meka_count) != num_labels:
            raise ValueError(
                f"{path}: the @relation header says -C {meka_count} (|C| labels) but "
                f"num_labels={num_labels}. Fix: make them agree."
            )
        origin = f"num_labels={num_labels}, label_location={options.label_location!r}"
        at_end = options.label_location == "end"
        cols = _counted_label_columns(path, num_attr, num_labels, at_end, origin)
    elif meka_count:
        origin = f"MEKA header -C {meka_count}"
        cols = _counted_label_columns(path, num_attr, abs(meka_count), meka_count < 0, origin)
    else:
        looked = ", ".join(xml_candidates(path))
        raise ValueError(
            f"{path}: cannot tell which attributes are labels: no Mulan XML header ({looked}) "
            "and no MEKA '-C L' in @relation. Fix: pass num_labels=L (config: "
            "--config.num_labels_arff=L) with label_location='end' (default, last L "
            "attributes) or 'start' (first L), or put the Mulan XML beside the file."
        )
    if not cols or len(cols) >= num_attr:
        raise ValueError(f"{path}: {origin} leaves no feature attributes.")
    return np.asarray(cols, np.int64), origin


def read(
    path: str, options: reading.ReadOptions, *, name: str | None = None
) -> dataset_lib.Dataset:
    """Reads a Mulan/MEKA ARFF file, dense or sparse (labels: see the module docstring)."""
    relation, attributes, matrix = _read_table(path)
    label_cols, _ = label_columns(path, attributes, relation, options)
    is_label = np.zeros(len(attributes), bool)
    is_label[label_cols] = True
    feature_cols = np.nonzero(~is_label)[0]
    names = [a for a, _ in attributes]
    return reading.checked_dataset(
        matrix[:, feature_cols],
        matrix[:, label_cols],
        source=path,
        label_names=[names[j] for j in label_cols],
        feature_names=[names[j] for j in feature_cols],
        name=name or reading.part_stem(path),
        label_columns=label_cols,
        feature_columns=feature_cols,
    )


def read_parts(paths, options: reading.ReadOptions) -> list[dataset_lib.Dataset]:
    """Reads the train/test(/val) files of one data set (each names its own columns)."""
    return [read(p, options) for p in paths]
