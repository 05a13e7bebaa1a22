"""Fuzz tests: malformed parameter files for ``bayesgmm.load`` and malformed inputs for the CLI.

Every malformed input must give a clear error (a ``ValueError`` naming the file and the
problem from ``load``; exit status 2 and one line on stderr from ``bayesgmm fit``), never a
traceback or an error from inside JAX, never unpickle anything, and never leave a partial
output file behind.
"""

import io
import json
import pickle
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import bayesgmm
from bayesgmm import GMMParams, _validation
from bayesgmm.cli import main, read_table

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_SCALES = {  # valid Cholesky factors for k = 2, d = 2 in each layout
    "full": [[[1.0, 0.0], [0.5, 2.0]], [[0.7, 0.0], [-0.2, 0.3]]],
    "tied": [[1.0, 0.0], [0.5, 2.0]],
    "diag": [[1.0, 2.0], [0.5, 0.25]],
    "spherical": [1.0, 0.5],
}


def _params(covariance_type="full", dtype=np.float64):
    return GMMParams(
        jnp.asarray(np.array([0.25, 0.75], dtype)),
        jnp.asarray(np.array([[0.0, 1.0], [2.0, -3.0]], dtype)),
        jnp.asarray(np.array(_SCALES[covariance_type], dtype)),
        covariance_type,
    )


def _fields(kind="full", /, **changes):
    """The members ``save`` writes for a valid ``kind`` of mixture, some replaced (None drops one)."""
    params = _params(kind)
    fields = {
        "format": np.array("bayesgmm.GMMParams"),
        "version": np.array(1),
        "covariance_type": np.array(kind),
        "weights": np.asarray(params.weights),
        "means": np.asarray(params.means),
        "scale": np.asarray(params.scale),
    }
    fields.update(changes)
    return {name: value for name, value in fields.items() if value is not None}


def _npy_bytes(array, version=None, **header_changes):
    """A .npy member; ``header_changes`` forge its header (shape, descr) without the data."""
    buffer = io.BytesIO()
    if header_changes:
        header = np.lib.format.header_data_from_array_1_0(array)
        header.update(header_changes)
        np.lib.format.write_array_header_1_0(buffer, header)
        buffer.write(array.tobytes())
    else:
        np.lib.format.write_array(buffer, array, version=version, allow_pickle=True)
    return buffer.getvalue()


def _zip(path, members):
    """Write ``members`` (name -> ndarray or raw bytes) as a zip archive, like np.savez."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in members.items():
            archive.writestr(f"{name}.npy", value if isinstance(value, bytes) else _npy_bytes(value))
    return path


def _json_document(covariance_type="full"):
    params = _params(covariance_type)
    document = {"format": "bayesgmm.GMMParams", "version": 1, "covariance_type": covariance_type, "dtype": "float64"}
    for name in ("weights", "means", "scale"):
        value = np.asarray(getattr(params, name))
        document[name] = {"shape": list(value.shape), "data": value.ravel().tolist()}
    return document


def _json(path, change=None, text=None):
    document = _json_document()
    if change is not None:
        change(document)
    path.write_text(text if text is not None else json.dumps(document))
    return path


class _Trap:
    """Unpickling this creates the file ``marker``: proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _trap_payload(tmp_path):
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Trap(marker))
    pickle.loads(payload).close()  # the trap works: unpickling really creates the marker ...
    assert marker.exists()
    marker.unlink()  # ... which the tests below check never reappears
    return marker, payload


# ----------------------------------------------------------------------------- load: hand-made cases


def _set(document, path, value):
    *parents, last = path
    for key in parents:
        document = document[key]
    document[last] = value


def _json_case(*path_and_value):
    *path, value = path_and_value
    return lambda p: _json(p / "x.json", lambda document: _set(document, path, value))


LOAD_CASES = {
    # .npz: not a zip, or a broken one
    "npz empty file": (lambda p: _write(p / "x.npz", b""), "not a valid bayesgmm parameter file"),
    "npz garbage": (lambda p: _write(p / "x.npz", b"PK\x03\x04 garbage" * 10), "not a valid bayesgmm parameter file"),
    "npz truncated": (lambda p: _truncated_npz(p / "x.npz"), "not a valid bayesgmm parameter file"),
    "npz no members": (lambda p: _zip(p / "x.npz", {}), "format None"),
    "npz a directory": (lambda p: _mkdir(p / "x.npz"), "not a valid bayesgmm parameter file"),
    # .npz members that are not plain .npy arrays of numbers
    "npz object array": (
        lambda p: _zip(p / "x.npz", _fields(weights=np.array([0.5, None], dtype=object))),
        r"pickled data, refused",
    ),
    "npz raw bytes member": (
        lambda p: _zip(p / "x.npz", _fields(weights=b"not an array")),
        "member 'weights' has no valid .npy header",
    ),
    "npz forged huge shape": (
        lambda p: _zip(p / "x.npz", _fields(means=_npy_bytes(np.zeros((2, 2)), shape=(10**12, 10**6)))),
        r"claims shape \(1000000000000, 1000000\)",
    ),
    "npz forged negative shape": (
        lambda p: _zip(p / "x.npz", _fields(means=_npy_bytes(np.zeros((2, 2)), shape=(-2, -2)))),
        "negative dimension",
    ),
    "npz short data": (
        lambda p: _zip(p / "x.npz", _fields(means=_npy_bytes(np.zeros((2, 2)), shape=(2, 3)))),
        r"claims shape \(2, 3\) of float64 \(48 bytes\) but holds 32 bytes",
    ),
    "npz structured dtype": (
        lambda p: _zip(p / "x.npz", _fields(weights=np.zeros(2, dtype=[("a", "f8")]))),
        "expected plain numbers",
    ),
    "npz complex weights": (
        lambda p: _zip(p / "x.npz", _fields(weights=np.array([0.25, 0.75], complex))),
        "expected plain numbers",
    ),
    "npz npy version 3": (
        lambda p: _zip(p / "x.npz", _fields(means=_npy_bytes(np.zeros((2, 2)), version=(3, 0)))),
        r"format version 3\.0",
    ),
    # wrong dtypes, values and shapes
    "npz int weights": (lambda p: _zip(p / "x.npz", _fields(weights=np.array([0, 1]))), "dtype int64"),
    "npz float16 means": (
        lambda p: _zip(p / "x.npz", _fields(means=np.zeros((2, 2), np.float16))),
        "dtype float16; it must be float32 or float64",
    ),
    "npz string means": (lambda p: _zip(p / "x.npz", _fields(means=np.array([["a", "b"]] * 2))), "dtype <U1"),
    "npz NaN means": (
        lambda p: _zip(p / "x.npz", _fields(means=np.array([[0.0, np.nan], [1.0, 2.0]]))),
        "must hold finite floats",
    ),
    "npz inf scale": (
        lambda p: _zip(p / "x.npz", _fields("diag", scale=np.array([[1.0, np.inf], [1.0, 1.0]]))),
        "must hold finite floats",
    ),
    "npz scale shape": (
        lambda p: _zip(p / "x.npz", _fields("full", scale=np.eye(2))),
        r"scale for covariance_type='full' must have shape \(2, 2, 2\)",
    ),
    "npz weights shape": (
        lambda p: _zip(p / "x.npz", _fields(weights=np.full(3, 1 / 3))),
        r"weights must have shape \(2,\)",
    ),
    "npz batch mismatch": (
        lambda p: _zip(p / "x.npz", _fields("spherical", weights=np.full((4, 2), 0.5))),
        r"weights must have shape \(2,\) to match means \(2, 2\), got \(4, 2\)",
    ),
    "npz no components": (
        lambda p: _zip(
            p / "x.npz", _fields("spherical", weights=np.zeros(0), means=np.zeros((0, 2)), scale=np.zeros(0))
        ),
        r"k, d >= 1",
    ),
    "npz 1-D means": (
        lambda p: _zip(p / "x.npz", _fields(means=np.zeros(2))),
        r"means must have shape \(\.\.\., k, d\)",
    ),
    # the header
    "npz unknown covariance_type": (
        lambda p: _zip(p / "x.npz", _fields(covariance_type=np.array("banana"))),
        "unknown covariance_type 'banana'",
    ),
    "npz numeric covariance_type": (
        lambda p: _zip(p / "x.npz", _fields(covariance_type=np.array(3))),
        "unknown covariance_type 3",
    ),
    "npz other version": (lambda p: _zip(p / "x.npz", _fields(version=np.array(3))), "format version 3"),
    "npz array version": (
        lambda p: _zip(p / "x.npz", _fields(version=np.array([1, 1]))),
        "'version' must be a single value",
    ),
    "npz other format": (
        lambda p: _zip(p / "x.npz", _fields(format=np.array("sklearn"))),
        "not a bayesgmm parameter file",
    ),
    "npz missing scale": (lambda p: _zip(p / "x.npz", _fields(scale=None)), r"lacks the field\(s\) \['scale'\]"),
    # not a valid mixture
    "npz negative Cholesky diagonal": (
        lambda p: _zip(p / "x.npz", _fields("tied", scale=np.array([[1.0, 0.0], [0.5, -2.0]]))),
        "Cholesky factor of a positive-definite covariance",
    ),
    "npz zero std": (
        lambda p: _zip(p / "x.npz", _fields("spherical", scale=np.array([1.0, 0.0]))),
        "standard deviations > 0",
    ),
    "npz not lower-triangular": (
        lambda p: _zip(p / "x.npz", _fields("tied", scale=np.array([[1.0, 0.3], [0.5, 2.0]]))),
        "must be lower-triangular",
    ),
    "npz weights not summing to 1": (
        lambda p: _zip(p / "x.npz", _fields(weights=np.array([0.5, 0.6]))),
        "weights must be non-negative and sum to 1",
    ),
    "npz negative weight": (
        lambda p: _zip(p / "x.npz", _fields(weights=np.array([-0.5, 1.5]))),
        "weights must be non-negative",
    ),
    # .json: not JSON, or not an object
    "json truncated": (lambda p: _json(p / "x.json", text=json.dumps(_json_document())[:57]), "not valid JSON"),
    "json not UTF-8": (lambda p: _write(p / "x.json", b'{"format": "\xff\xfe"}'), "not UTF-8 text"),
    "json a list": (lambda p: _json(p / "x.json", text="[1, 2]"), "top level is not an object"),
    "json null": (lambda p: _json(p / "x.json", text="null"), "top level is not an object"),
    "json deeply nested": (lambda p: _json(p / "x.json", text="[" * 100_000), "nested too deeply"),
    "json empty": (lambda p: _json(p / "x.json", text=""), "not valid JSON"),
    # .json fields
    "json NaN token": (_json_case("means", "data", 1, float("nan")), "must hold finite floats"),
    "json Infinity token": (_json_case("scale", "data", 0, float("inf")), "must hold finite floats"),
    "json string in data": (_json_case("means", "data", 0, "0.5"), "data must be a flat list of numbers"),
    "json null in data": (_json_case("means", "data", 0, None), "data must be a flat list of numbers"),
    "json bool in data": (_json_case("weights", "data", 0, True), "data must be a flat list of numbers"),
    "json nested data": (_json_case("means", "data", [[0.0, 1.0], [2.0, -3.0]]), "data must be a flat list"),
    "json data a string": (_json_case("means", "data", "0,1,2,3"), "data must be a flat list"),
    "json huge integer": (_json_case("means", "data", 0, 10**400), "integer too large"),
    "json beyond float32": (
        lambda p: _json(p / "x.json", lambda d: (d.update(dtype="float32"), _set(d, ["means", "data", 0], 1e39))),
        "beyond the range of float32",
    ),
    "json negative shape": (_json_case("means", "shape", [-1, 2]), "shape must be a list of non-negative integers"),
    "json bool shape": (_json_case("weights", "shape", [True, True]), "shape must be a list of non-negative integers"),
    "json float shape": (_json_case("weights", "shape", [2.0]), "shape must be a list of non-negative integers"),
    "json shape a number": (_json_case("weights", "shape", 2), "shape must be a list of non-negative integers"),
    "json shape/data mismatch": (_json_case("means", "shape", [2, 3]), r"shape \[2, 3\] needs 6 values, data has 4"),
    "json huge shape": (_json_case("means", "shape", [10**9, 10**9, 10**9]), "needs 1000000000000000000000000000"),
    "json field a list": (_json_case("scale", [1.0, 2.0]), "must be an object with 'shape' and 'data'"),
    "json field without data": (_json_case("scale", {"shape": [2]}), "must be an object with 'shape' and 'data'"),
    "json object dtype": (_json_case("dtype", "object"), "dtype 'object' is not one of"),
    "json int dtype": (_json_case("dtype", "int64"), "dtype 'int64' is not one of"),
    "json null dtype": (_json_case("dtype", None), "dtype None is not one of"),
    "json list dtype": (_json_case("dtype", ["float64"]), r"dtype \['float64'\] is not one of"),
    "json wrong covariance_type": (_json_case("covariance_type", "diag"), r"scale for covariance_type='diag'"),
    "json list covariance_type": (_json_case("covariance_type", ["full"]), r"unknown covariance_type \['full'\]"),
    "json string version": (_json_case("version", "1"), "format version '1'"),
    "json bool version": (_json_case("version", True), "format version True"),
    "json float version": (_json_case("version", 1.5), "format version 1.5"),
    "json missing format": (lambda p: _json(p / "x.json", lambda d: d.pop("format")), "format None"),
    "json non-PD scale": (
        _json_case("scale", "data", 3, -2.0),
        "Cholesky factor of a positive-definite covariance",
    ),
    "json weights not summing to 1": (_json_case("weights", "data", [0.5, 0.4]), "sum to 1"),
    # neither
    "unknown extension": (lambda p: _write(p / "x.pkl", pickle.dumps(1)), r"unknown file extension '\.pkl'"),
    "no extension": (lambda p: _write(p / "params", b"{}"), "unknown file extension ''"),
}


def _write(path, content):
    path.write_bytes(content)
    return path


def _mkdir(path):
    path.mkdir()
    return path


def _truncated_npz(path):
    bayesgmm.save(_params(), path)
    path.write_bytes(path.read_bytes()[:300])
    return path


@pytest.mark.parametrize("case", list(LOAD_CASES))
def test_load_rejects_malformed_files_clearly(tmp_path, case):
    make, message = LOAD_CASES[case]
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        bayesgmm.load(path)
    assert str(path) in str(info.value)  # the error names the file
    assert "\n" not in str(info.value)


def test_load_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        bayesgmm.load(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    "make",
    [
        lambda p: _zip(p / "x.npz", _fields("full")),
        lambda p: _zip(p / "x.npz", _fields("diag", scale=np.asfortranarray(np.array(_SCALES["diag"])))),
        lambda p: _compressed(p / "x.npz"),
        lambda p: _zip(p / "x.npz", {**_fields("tied"), "extra": np.zeros(3)}),
        lambda p: _json(p / "x.json", lambda d: d.pop("dtype")),  # float64 by default
    ],
    ids=["plain", "fortran order", "compressed", "extra member", "no dtype"],
)
def test_load_accepts_well_formed_variants(tmp_path, make):
    """The checks are not over-eager: valid files in other layouts load to the right values."""
    params = bayesgmm.load(make(tmp_path))
    expected = _params(params.covariance_type)
    for name in ("weights", "means", "scale"):
        np.testing.assert_array_equal(np.asarray(getattr(params, name)), np.asarray(getattr(expected, name)))


def _compressed(path):
    np.savez_compressed(path, **_fields("spherical"))
    return path


def test_load_never_unpickles(tmp_path):
    """Pickled payloads in every place an .npz can hold them are refused without running them."""
    marker, payload = _trap_payload(tmp_path)
    trap = np.empty(2, dtype=object)
    trap[:] = [_Trap(marker), 0.5]
    cases = {
        "object.npz": lambda p: np.savez(p, **_fields(weights=trap)),  # np.savez pickles object arrays
        "raw.npz": lambda p: _zip(p, _fields(weights=payload)),
        "pickle.npz": lambda p: p.write_bytes(payload),
        "pickle.json": lambda p: p.write_bytes(payload),
    }
    for name, make in cases.items():
        make(tmp_path / name)
        with pytest.raises(ValueError, match="not a valid bayesgmm parameter file"):
            bayesgmm.load(tmp_path / name)
        assert not marker.exists(), name


def test_save_refuses_invalid_params_and_writes_nothing(tmp_path):
    """save checks what load checks, so every file it writes can be read back."""
    bad = GMMParams(jnp.asarray([0.5, 0.6]), jnp.zeros((2, 1)), jnp.ones(2), "spherical")
    nan = GMMParams(jnp.asarray([0.5, 0.5]), jnp.full((2, 1), jnp.nan), jnp.ones(2), "spherical")
    for params, message in [(bad, "sum to 1"), (nan, "finite")]:
        for suffix in (".npz", ".json"):
            with pytest.raises(ValueError, match=f"Cannot save to .*{message}"):
                bayesgmm.save(params, tmp_path / f"p{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    from bayesgmm.io import atomic_write

    def write_then_fail(file):
        file.write(b"half a file")
        raise OSError(28, "No space left on device")

    path = tmp_path / "params.json"
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, write_then_fail)
    assert list(tmp_path.iterdir()) == []
    bayesgmm.save(_params(), path)
    before = path.read_bytes()
    with pytest.raises(OSError):
        atomic_write(path, write_then_fail)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["params.json"]


# ----------------------------------------------------------------------------- load: byte-level fuzzing


_VALID_FILES = {}


def _valid_file(tmp_path_factory, suffix, covariance_type, dtype):
    key = (suffix, covariance_type, dtype)
    if key not in _VALID_FILES:
        path = tmp_path_factory.mktemp("valid") / f"params{suffix}"
        bayesgmm.save(_params(covariance_type, dtype), path)
        _VALID_FILES[key] = path.read_bytes()
    return _VALID_FILES[key]


@st.composite
def corruptions(draw, original: bytes):
    """Overwrite, insert and delete a few bytes, and maybe truncate."""
    content = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        if not content:
            break
        position = draw(st.integers(0, len(content) - 1))
        action = draw(st.sampled_from(["overwrite", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if action == "overwrite":
            content[position] = byte
        elif action == "insert":
            content.insert(position, byte)
        else:
            del content[position]
    if draw(st.booleans()):
        content = content[: draw(st.integers(0, len(content)))]
    return bytes(content)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@settings(max_examples=150, **_SETTINGS)
@given(
    covariance_type=st.sampled_from(list(_SCALES)),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_load_of_corrupted_bytes_is_a_value_error_or_valid(tmp_path_factory, suffix, covariance_type, dtype, data):
    original = _valid_file(tmp_path_factory, suffix, covariance_type, dtype)
    content = data.draw(corruptions(original))
    path = tmp_path_factory.mktemp("corrupt") / f"params{suffix}"
    path.write_bytes(content)
    try:
        params = bayesgmm.load(path)
    except ValueError as error:
        assert str(path) in str(error) and "\n" not in str(error)
        return
    # some corruptions are harmless (a digit of a JSON number, an unused zip field): then the
    # result must still be a valid mixture
    assert isinstance(params, GMMParams)
    weights = np.asarray(params.weights, np.float64)
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(params))
    assert np.all(weights >= 0) and abs(weights.sum() - 1) < 1e-3


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, **_SETTINGS)
@given(
    key=st.sampled_from(["format", "version", "covariance_type", "dtype", "weights", "means", "scale"]),
    subkey=st.sampled_from([None, "shape", "data"]),
    value=_JSON_VALUES,
)
def test_load_of_json_with_any_value_anywhere(tmp_path_factory, key, subkey, value):
    """Replace one entry of a valid document by an arbitrary JSON value: a ValueError or a valid load."""
    document = _json_document()
    if subkey is not None and isinstance(document[key], dict):
        document[key][subkey] = value
    else:
        document[key] = value
    path = tmp_path_factory.mktemp("json") / "params.json"
    path.write_text(json.dumps(document))
    try:
        params = bayesgmm.load(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    assert isinstance(params, GMMParams) and np.all(np.isfinite(np.asarray(params.means)))


# ----------------------------------------------------------------------------- the CLI


def _npy(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


def _npz_bytes():
    buffer = io.BytesIO()
    np.savez(buffer, X=np.ones((5, 2)))
    return buffer.getvalue()


_ROWS = "".join(f"{i % 7 * 0.5:.1f},{(i * 3) % 11 * 0.25:.2f}\n" for i in range(30))  # 30 rows, 2 columns
_COLUMN = np.array([i % 7 * 0.5 for i in range(30)])
# the two successful CLI fits below share this one-column CSV: one em_fit compile for both
_ONE_COLUMN_CSV = ("value\n" + "".join(f"{value!r}\n" for value in _COLUMN.tolist())).encode()

CLI_CASES = {
    "empty.csv": (b"", "no data rows"),
    "header-only.csv": (b"a,b\n", "no data rows"),
    "blank-lines.csv": (b"a,b\n\n\n", "no data rows"),
    "ragged.csv": (b"a,b\n1,2\n3\n4,5\n", "the number of columns changed from 2 to 1 at row 2"),
    "non-numeric.csv": (b"a,b\n1,2\nx,4\n", "every value after the header line must be a number"),
    "quoted.csv": (b'a,b\n"1","2"\n', "every value after the header line must be a number"),
    "nan.csv": (b"a,b\n1,2\nnan,4\n5,6\n", r"X contains NaN in 1 row\(s\) \(first: row 1\)"),
    "inf.csv": (b"a,b\n1,2\n3,inf\n5,6\n", "X contains infinite values"),
    "overflow.csv": (b"a,b\n1e400,2\n3,4\n", "X contains infinite values"),
    "huge-spread.csv": (b"a,b\n1e300,2\n-1e300,4\n5,6\n", "their squares overflow float64"),
    "header-mismatch.csv": (b"a\n1,2\n3,4\n", r"the header names 1 column\(s\) but the rows have 2 values"),
    "latin-1.csv": (b"a,b\n1,2\n\xe9,4\n", "not UTF-8 text"),
    "nul-bytes.csv": (b"a,b\n1,\x002\n3,4\n", "every value after the header line must be a number"),
    "too-few-rows.csv": (b"a,b\n1,2\n", "k=2 components need at least 2 samples"),
    "pickle.npy": (pickle.dumps(np.ones((4, 2))), "no valid .npy header"),
    "object.npy": (_npy(np.array([[1.0, None]] * 4, dtype=object), allow_pickle=True), r"pickled data, refused"),
    "npz-renamed.npy": (_npz_bytes(), "no valid .npy header"),
    "empty.npy": (b"", "no valid .npy header"),
    "truncated.npy": (_npy(np.ones((10, 2)))[:140], r"claims shape \(10, 2\) of float64 \(160 bytes\) but holds 12"),
    "forged-shape.npy": (_npy_bytes(np.ones((4, 2)), shape=(10**12, 2)), r"claims shape \(1000000000000, 2\)"),
    "bad-header.npy": (_npy(np.ones((4, 2))).replace(b"(4, 2)", b"(9**9, 2)"), "no valid .npy header"),
    "1-d.npy": (_npy(np.ones(5)), r"the array has shape \(5,\); it must be 2-D"),
    "3-d.npy": (_npy(np.ones((2, 2, 2))), r"shape \(2, 2, 2\); it must be 2-D"),
    "0-d.npy": (_npy(np.float64(1.0)), r"shape \(\); it must be 2-D"),
    "no-rows.npy": (_npy(np.ones((0, 2))), "X is empty"),
    "strings.npy": (_npy(np.array([["a", "b"]] * 4)), "X has dtype <U1"),
    "bools.npy": (_npy(np.ones((4, 2), bool)), "X has dtype bool"),
    "complex.npy": (_npy(np.ones((4, 2), complex)), "X is complex"),
    "nan.npy": (_npy(np.array([[1.0, np.nan], [2.0, 3.0], [4.0, 5.0]])), "X contains NaN"),
    "data.xlsx": (b"PK\x03\x04", r"unsupported file type '\.xlsx'"),
    "no-extension": (b"a,b\n1,2\n", "unsupported file type ''"),
}


def _run_cli(tmp_path, capsys, argv):
    capsys.readouterr()
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def _assert_clean_failure(status, err, message):
    assert status == 2
    assert len(err) == 1 and err[0].startswith("bayesgmm: error: "), err
    assert re.search(message, err[0]), err[0]


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_rejects_malformed_input_with_one_line(tmp_path, capsys, name):
    content, message = CLI_CASES[name]
    path = _write(tmp_path / name, content)
    out = tmp_path / "params.json"
    status, _, err = _run_cli(tmp_path, capsys, ["fit", str(path), "-k", "2", "--n-init", "1", "--out", str(out)])
    _assert_clean_failure(status, err, message)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no output, no temporary file


def test_cli_missing_file_and_folder(tmp_path, capsys):
    status, _, err = _run_cli(tmp_path, capsys, ["fit", str(tmp_path / "absent.csv"), "-k", "1"])
    _assert_clean_failure(status, err, "absent.csv: no such file")
    (tmp_path / "folder.csv").mkdir()
    status, _, err = _run_cli(tmp_path, capsys, ["fit", str(tmp_path / "folder.csv"), "-k", "1"])
    _assert_clean_failure(status, err, "folder.csv: no such file")


def test_cli_never_unpickles(tmp_path, capsys):
    marker, payload = _trap_payload(tmp_path)
    trap = np.empty((2, 2), dtype=object)
    trap[:] = _Trap(marker)
    for name, content in [("raw.npy", payload), ("object.npy", _npy(trap, allow_pickle=True))]:
        status, _, err = _run_cli(tmp_path, capsys, ["fit", str(_write(tmp_path / name, content)), "-k", "1"])
        _assert_clean_failure(status, err, "is not a valid .npy array")
        assert not marker.exists(), name


@pytest.mark.parametrize(
    "out, message",
    [
        ("params.pickle", r"Unknown file extension '\.pickle'"),
        ("missing-folder/params.json", "does not exist; create it first"),
        ("a-folder.json", "it is a folder"),
    ],
)
def test_cli_refuses_a_bad_out_before_fitting(tmp_path, capsys, out, message):
    (tmp_path / "a-folder.json").mkdir()
    csv = _write(tmp_path / "data.csv", ("a,b\n" + _ROWS).encode())
    before = sorted(p.name for p in tmp_path.iterdir())
    status, stdout, err = _run_cli(tmp_path, capsys, ["fit", str(csv), "-k", "1", "--out", str(tmp_path / out)])
    _assert_clean_failure(status, err, message)
    assert stdout == ""  # refused before reading the data or fitting
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.slow  # compiles em_fit and the CLI's eager summaries
def test_cli_fit_failure_leaves_no_output_and_keeps_an_old_one(tmp_path, capsys):
    """In float32 (the default without x64) squared deviations of 1e25 overflow: em_fit refuses."""
    csv = _write(tmp_path / "data.csv", b"a,b\n1e25,1\n-1e25,2\n3e24,3\n-2e24,4\n")
    out = tmp_path / "params.json"
    with jax.enable_x64(False):
        status, _, err = _run_cli(tmp_path, capsys, ["fit", str(csv), "-k", "1", "--n-init", "1", "--out", str(out)])
        _assert_clean_failure(status, err, "do not fit in float32 .* Enable float64")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]
        bayesgmm.save(_params(), out)
        before = out.read_bytes()
        status, _, err = _run_cli(tmp_path, capsys, ["fit", str(csv), "-k", "1", "--n-init", "1", "--out", str(out)])
        _assert_clean_failure(status, err, "do not fit in float32 .* Enable float64")
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "params.json"]


@pytest.mark.slow  # compiles em_fit and the CLI's eager summaries
def test_cli_write_failure_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    """The fit succeeds but writing --out fails half-way (disk full): one line, no partial file."""
    csv = _write(tmp_path / "data.csv", _ONE_COLUMN_CSV)

    def savez_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    argv = ["fit", str(csv), "-k", "1", "--n-init", "1", "--out", str(tmp_path / "params.npz")]
    status, stdout, err = _run_cli(tmp_path, capsys, argv)
    _assert_clean_failure(status, err, "No space left on device")
    assert "EM: mean log-likelihood" in stdout  # it did fit
    assert [p.name for p in tmp_path.iterdir()] == ["data.csv"]


@pytest.mark.slow  # compiles em_fit and the CLI's eager summaries (unless the test above did)
def test_cli_fits_a_single_column_and_writes_a_loadable_file(tmp_path, capsys):
    """One column is not malformed: d = 1 fits, and --out holds the fitted mixture."""
    csv = _write(tmp_path / "one.csv", _ONE_COLUMN_CSV)
    out = tmp_path / "params.json"
    status, stdout, err = _run_cli(tmp_path, capsys, ["fit", str(csv), "-k", "1", "--n-init", "1", "--out", str(out)])
    assert status == 0 and err == []
    params = bayesgmm.load(out)
    assert params.n_features == 1 and params.n_components == 1
    # k = 1 is the closed form: the sample mean and the biased variance (+ reg_covar = 1e-6)
    np.testing.assert_allclose(np.asarray(params.means)[0, 0], _COLUMN.mean(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(params.covariances)[0, 0, 0], _COLUMN.var() + 1e-6, rtol=1e-10)


# ----------------------------------------------------------------------------- the CLI: fuzzing the reader


def _read_outcome(path):
    """What ``bayesgmm fit`` does with a file before fitting: a ValueError, or valid data."""
    try:
        X, names = read_table(str(path), None)
        X = _validation.check_data(X)
    except ValueError as error:
        assert "\n" not in str(error)
        return None
    assert X.ndim == 2 and X.dtype in (np.float32, np.float64) and np.all(np.isfinite(X))
    if path.suffix == ".csv":
        assert X.shape[1] == len(names)
    return X


_CSV_ALPHABET = st.sampled_from(list('0123456789.,-+e \n\t"#') + ["nan", "inf", "x", "é", "\x00", "\r\n", ",,"])


@settings(max_examples=200, **_SETTINGS)
@given(
    header=st.sampled_from(["a,b\n", "a\n", "", "a,b,c\n", "\ufeffa,b\n"]),
    body=st.lists(_CSV_ALPHABET, max_size=40).map("".join),
)
def test_cli_reader_on_arbitrary_csv_text(tmp_path_factory, header, body):
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    path.write_bytes((header + body).encode("utf-8", "surrogatepass"))
    _read_outcome(path)


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
@settings(max_examples=150, **_SETTINGS)
@given(data=st.data())
def test_cli_reader_on_corrupted_bytes(tmp_path_factory, suffix, data):
    rows = np.array([[float(v) for v in row.split(",")] for row in _ROWS.splitlines()])
    original = ("a,b\n" + _ROWS).encode() if suffix == ".csv" else _npy(rows)
    path = tmp_path_factory.mktemp("bytes") / f"data{suffix}"
    path.write_bytes(data.draw(corruptions(original)))
    _read_outcome(path)


# ----------------------------------------------------------------------------- input validation


@settings(max_examples=300, **_SETTINGS)
@given(
    X=hnp.arrays(
        dtype=hnp.scalar_dtypes() | st.just(np.dtype(np.longdouble)) | st.just(np.dtype(object)),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
)
def test_check_data_returns_finite_float_arrays_or_a_value_error(X):
    """Whatever array em_fit or infer is given, it gets a 2-D finite float32/float64 array or a ValueError."""
    try:
        array = _validation.check_data(X)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert array.ndim == 2 and min(array.shape) >= 1
    assert array.dtype in (np.float32, np.float64) and np.all(np.isfinite(array))


_NESTED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3) | st.complex_numbers(),
    lambda children: st.lists(children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, **_SETTINGS)
@given(
    weights=_NESTED | st.none(),
    means=_NESTED | st.none(),
    covariances=_NESTED | st.none(),
    covariance_type=st.sampled_from(list(_SCALES)),
)
def test_initial_parameters_are_arrays_or_a_value_error(weights, means, covariances, covariance_type):
    try:
        checked = _validation.check_initial_parameters(
            weights, means, covariances, k=2, d=1, covariance_type=covariance_type
        )
    except ValueError as error:
        assert "\n" not in str(error)
        return
    for value in checked:
        assert value is None or (value.dtype == np.float64 and np.all(np.isfinite(value)))
