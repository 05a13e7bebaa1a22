"""Save and load ``GMMParams`` as ``.npz`` or ``.json``; never pickle.

Files are written atomically: to a temporary file in the same folder, then renamed.
Both formats round-trip exactly (JSON stores floats by their shortest repr, which
Python reads back to the same bits; the dtype is recorded).

``load`` trusts nothing in a file: every field is checked (type, dtype, shape, finite
values, weights summing to one, a Cholesky factor with a positive diagonal) before any
array is built, the ``.npy`` members of an ``.npz`` are read from their headers without
ever unpickling, and an array is only allocated when the file really holds its bytes.
Anything wrong is a ``ValueError`` that names the file and the problem.

Format versions: 1 holds a Gaussian mixture (``weights``, ``means``, ``scale``); 2 adds the
component family (``family``, ``dof_mode`` and the ``dof`` array of Student-t components).
``save`` writes version 1 for Gaussian mixtures, so their files are unchanged and older
bayesgmm reads them, and version 2 otherwise, which an older bayesgmm refuses (by version)
rather than reading a Student-t mixture as a Gaussian one. Version 1 files load as Gaussian.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from bayesgmm._errors import ArgumentTypeError
from bayesgmm.covariance import STRUCTURES, get_structure
from bayesgmm.families import DOF_MODES, FAMILIES
from bayesgmm.params import GMMParams

FORMAT = "bayesgmm.GMMParams"
VERSION = 2  # the newest version this module reads and writes; see the module docstring
_VERSIONS = (1, 2)
SUFFIXES = (".npz", ".json")
_FIELDS = ("weights", "means", "scale")
_OPTIONAL_FIELDS = ("dof", "noise_weight", "noise_bounds")  # version 2: Student-t's dof; a noise component's
_HEADER = ("format", "version", "covariance_type")
_OPTIONAL_HEADER = ("family", "dof_mode")  # version 2
_DTYPES = ("float32", "float64")


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_output_path(path) -> Path:
    """Return ``path`` as a ``Path`` if ``save`` can write there, else raise a ValueError.

    Checks the extension (``.npz`` or ``.json``) and that the folder exists, so a command
    can refuse a bad ``--out`` before spending time on a fit.
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"Unknown file extension {path.suffix!r} for {path}; use .npz or .json.")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"Cannot write {path}: the folder {str(folder)!r} does not exist; create it first.")
    if path.is_dir():
        raise ValueError(f"Cannot write {path}: it is a folder; give a file name ending in .npz or .json.")
    return path


def save(params: GMMParams, path) -> None:
    """Write ``params`` to ``path`` (``.npz`` or ``.json``), atomically.

    Parameters
    ----------
    params : GMMParams
        Any batch shape; fields float32 or float64. They must be valid (finite, weights
        summing to one, scale a Cholesky factor with a positive diagonal), as ``load``
        checks the same, so a file written by ``save`` always loads.
    path : str or Path
        Ending in ``.npz`` or ``.json``.

    Raises
    ------
    ValueError
        For another object, another extension or invalid parameters; nothing is written.

    Examples
    --------
    >>> import tempfile, os
    >>> from bayesgmm import GMMParams, save, load
    >>> params = GMMParams.from_covariances([1.0], [[0.0, 1.0]], [[1.0, 2.0]], "diag")
    >>> path = os.path.join(tempfile.mkdtemp(), "params.json")
    >>> save(params, path)
    >>> load(path).covariance_type
    'diag'

    A Student-t mixture keeps its family, degrees of freedom and how they were fitted:

    >>> t_params = GMMParams.from_covariances(
    ...     [1.0], [[0.0, 1.0]], [[1.0, 2.0]], "diag", family="student_t", dof=[5.0], dof_mode="shared")
    >>> save(t_params, path)
    >>> loaded = load(path)
    >>> loaded.family, loaded.dof_mode, loaded.dof.tolist()
    ('student_t', 'shared', [5.0])
    """
    if not isinstance(params, GMMParams):
        raise ArgumentTypeError(f"save expects a GMMParams, got {type(params).__name__}.")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"Unknown file extension {path.suffix!r} for {path}; use .npz or .json.")
    arrays = {name: np.asarray(getattr(params, name)) for name in _FIELDS}
    header = {"format": FORMAT, "version": 1, "covariance_type": params.covariance_type}
    if params.family != "gaussian" or params.noise_weight is not None:
        header.update(version=2, family=params.family, dof_mode=params.dof_mode)
    if params.family != "gaussian":
        arrays["dof"] = np.asarray(params.dof)
    if params.noise_weight is not None:
        arrays.update(noise_weight=np.asarray(params.noise_weight), noise_bounds=np.asarray(params.noise_bounds))
    _check_params(arrays, params.covariance_type, f"Cannot save to {path}", params.family)
    if suffix == ".npz":

        def write(file):
            np.savez(file, **{name: np.array(value) for name, value in header.items()}, **arrays)
    else:
        document = {
            **header,
            "dtype": str(arrays["means"].dtype),
            **{
                name: {"shape": list(a.shape), "data": a.astype(np.float64).ravel().tolist()}
                for name, a in arrays.items()
            },
        }

        def write(file):
            file.write(json.dumps(document, allow_nan=False).encode())

    atomic_write(path, write)


def load(path) -> GMMParams:
    """Read ``GMMParams`` written by ``save`` (``.npz`` or ``.json``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    GMMParams
        With the dtype, batch shape, family, degrees of freedom and ``dof_mode`` that were
        saved (float64 becomes float32 when ``jax_enable_x64`` is off). Files of format
        version 1 (written before families existed) load as Gaussian mixtures.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        For anything else: another extension, a file that is not a bayesgmm parameter file
        (corrupt, truncated, pickled or object data, wrong shapes or dtypes, non-finite
        values, weights not summing to one, a scale that is not a Cholesky factor, an
        unknown family, degrees of freedom missing or outside their bounds).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown file extension {path.suffix!r}; use .npz or .json.")
    source = f"{path} is not a valid bayesgmm parameter file"
    try:
        header, arrays = _read_npz(path) if suffix == ".npz" else _read_json(path)
    except FileNotFoundError:
        raise
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    except Exception as error:  # zip, OS and decoding errors from malformed files
        raise ValueError(f"{source}: {type(error).__name__}: {error}") from None
    if header["format"] != FORMAT:
        raise ValueError(f"{path} is not a bayesgmm parameter file (format {header['format']!r}).")
    version = header["version"]
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version not in _VERSIONS:
        raise ValueError(
            f"{path} has format version {version!r}; this bayesgmm reads {' and '.join(map(str, _VERSIONS))}."
        )
    covariance_type = header["covariance_type"]
    if not isinstance(covariance_type, str) or covariance_type not in STRUCTURES:
        raise ValueError(
            f"{path} has an unknown covariance_type {covariance_type!r}; expected one of {tuple(STRUCTURES)}."
        )
    family, dof_mode = _read_family(header, arrays, path)
    missing = [name for name in _FIELDS if arrays[name] is None]
    if family != "gaussian" and arrays["dof"] is None:
        missing.append("dof")
    if missing:
        raise ValueError(f"{path} lacks the field(s) {missing}.")
    _check_params(arrays, covariance_type, str(path), family)
    dof = None if family == "gaussian" else jnp.asarray(arrays["dof"])
    noise = arrays["noise_weight"] is not None
    return GMMParams(
        *(jnp.asarray(arrays[name]) for name in _FIELDS),
        covariance_type=covariance_type,
        dof=dof,
        family=family,
        dof_mode=dof_mode,
        noise_weight=jnp.asarray(arrays["noise_weight"]) if noise else None,
        noise_bounds=jnp.asarray(arrays["noise_bounds"]) if noise else None,
    )


def _read_family(header: dict, arrays: dict, path: Path) -> tuple[str, str]:
    """``(family, dof_mode)`` from a header: Gaussian for version 1, checked for version 2."""
    if header["version"] == 1:
        extra = [name for name in _OPTIONAL_HEADER if header[name] is not None]
        extra += [name for name in _OPTIONAL_FIELDS if arrays[name] is not None]
        if extra:
            raise ValueError(f"{path} has format version 1 but holds {extra}, which need version 2.")
        return "gaussian", "component"
    family, dof_mode = header.get("family"), header.get("dof_mode")
    if not isinstance(family, str) or family not in FAMILIES:
        raise ValueError(f"{path} has an unknown family {family!r}; expected one of {tuple(FAMILIES)}.")
    if not isinstance(dof_mode, str) or dof_mode not in DOF_MODES:
        raise ValueError(f"{path} has an unknown dof_mode {dof_mode!r}; expected one of {DOF_MODES}.")
    if family == "gaussian" and arrays["dof"] is not None:
        raise ValueError(f"{path} holds degrees of freedom ('dof') for family 'gaussian'; only Student-t has them.")
    return family, dof_mode


# ----------------------------------------------------------------------------- checks


def _check_params(arrays: dict, covariance_type: str, source: str, family: str = "gaussian") -> None:
    """Raise a ValueError (prefixed by ``source``) unless the arrays make a valid GMMParams."""
    names = _FIELDS + tuple(name for name in _OPTIONAL_FIELDS if arrays.get(name) is not None)
    for name in names:
        value = arrays[name]
        if value.dtype.name not in _DTYPES:
            raise ValueError(f"{source}: field {name!r} has dtype {value.dtype}; it must be float32 or float64.")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{source}: field {name!r} must hold finite floats (it has NaN or infinite values).")
    weights, means, scale = (arrays[name] for name in _FIELDS)
    if means.ndim < 2 or 0 in means.shape[-2:]:
        raise ValueError(f"{source}: means must have shape (..., k, d) with k, d >= 1, got {means.shape}.")
    batch, (k, d) = means.shape[:-2], means.shape[-2:]
    structure = get_structure(covariance_type)
    if weights.shape != batch + (k,):
        raise ValueError(
            f"{source}: weights must have shape {batch + (k,)} to match means {means.shape}, got {weights.shape}."
        )
    expected = batch + structure.core.scale_shape(k, d)
    if scale.shape != expected:
        raise ValueError(
            f"{source}: scale for covariance_type={covariance_type!r} must have shape {expected} "
            f"to match means {means.shape}, got {scale.shape}."
        )
    # Weights: a probability vector, up to the round-off of the dtype they were computed in.
    tolerance = math.sqrt(np.finfo(weights.dtype).eps)
    if np.any(weights < 0) or np.any(np.abs(weights.sum(axis=-1) - 1.0) > tolerance):
        raise ValueError(f"{source}: weights must be non-negative and sum to 1 (sums: {weights.sum(axis=-1)!r}).")
    # The scale is a Cholesky factor: lower-triangular matrices with a positive diagonal
    # (full, tied), or standard deviations (diag, spherical; no correlation factor).
    is_matrix = structure.core.scale_shape(2, 3)[-2:] == (3, 3)  # full, tied and mclust's models: (.., d, d)
    if is_matrix and np.any(np.triu(scale, 1) != 0):
        raise ValueError(
            f"{source}: scale must be lower-triangular (a Cholesky factor); it has entries above the diagonal."
        )
    diagonal = np.diagonal(scale, axis1=-2, axis2=-1) if is_matrix else scale
    if np.any(diagonal <= 0):
        raise ValueError(
            f"{source}: scale must be a Cholesky factor of a positive-definite covariance "
            f"({'diagonal entries' if is_matrix else 'standard deviations'} > 0); the smallest is {diagonal.min():.6g}."
        )
    if family != "gaussian":
        dof = arrays["dof"]
        if dof.shape != batch + (k,):
            raise ValueError(
                f"{source}: dof must have shape {batch + (k,)} to match means {means.shape}, got {dof.shape}."
            )
        if np.any(dof <= 0):
            raise ValueError(f"{source}: dof (degrees of freedom) must be positive; the smallest is {dof.min():.6g}.")
    if (arrays.get("noise_weight") is None) != (arrays.get("noise_bounds") is None):
        raise ValueError(f"{source}: a noise component needs both 'noise_weight' and 'noise_bounds'.")
    if arrays.get("noise_weight") is not None:
        noise_weight, bounds = arrays["noise_weight"], arrays["noise_bounds"]
        if noise_weight.shape != batch or bounds.shape != batch + (2, d):
            raise ValueError(
                f"{source}: noise_weight must have shape {batch} and noise_bounds {batch + (2, d)}, got "
                f"{noise_weight.shape} and {bounds.shape}."
            )
        if np.any(noise_weight < 0) or np.any(noise_weight >= 1):
            raise ValueError(f"{source}: noise_weight must be in [0, 1).")
        if np.any(bounds[..., 1, :] <= bounds[..., 0, :]):
            raise ValueError(f"{source}: noise_bounds' upper corner must exceed the lower one on every feature.")


# ----------------------------------------------------------------------------- readers


def _read_npz(path: Path) -> tuple[dict, dict]:
    """Header values and arrays from the ``.npy`` members of an ``.npz``, without pickle."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        values = {}
        for name in _HEADER + _OPTIONAL_HEADER + _FIELDS + _OPTIONAL_FIELDS:
            info = members.get(f"{name}.npy")
            values[name] = None if info is None else _read_npy_member(archive, info, name)
    header = {}
    for name in _HEADER + _OPTIONAL_HEADER:
        value = values.pop(name)
        if value is not None and value.shape != ():
            raise ValueError(f"{name!r} must be a single value, got an array of shape {value.shape}")
        header[name] = None if value is None else value.item()
    return header, values


def _read_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    with archive.open(info) as file:
        return _read_npy(file, info.file_size, f"member {name!r}")


def read_npy(path) -> np.ndarray:
    """Read a ``.npy`` file without pickle, refusing forged or truncated headers.

    Unlike ``np.load``, this never falls back to unpickling, never opens an ``.npz``, and
    allocates an array only when the file holds all of its bytes.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray
        Float, integer, boolean, complex or string values, any shape.

    Raises
    ------
    ValueError
        When the file is not a valid ``.npy`` array of such values.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            return _read_npy(file, path.stat().st_size, "the file", kinds="biufcU")
    except ValueError as error:
        raise ValueError(f"{path} is not a valid .npy array: {error}.") from None


def _read_npy(file, size: int, what: str, kinds: str = "fiuU") -> np.ndarray:
    """The array in ``file`` (``size`` bytes from its start), read from its header alone."""
    try:
        major, minor = np.lib.format.read_magic(file)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if (major, minor) not in read_header:
            raise ValueError(f"format version {major}.{minor}; expected 1.0 or 2.0")
        shape, fortran_order, dtype = read_header[major, minor](file)
    except Exception as error:  # bad magic, truncated or unparsable header text (ValueError, TokenError, ...)
        raise ValueError(f"{what} has no valid .npy header ({error})") from None
    if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None or dtype.itemsize == 0:
        what_it_holds = "Python objects (pickled data, refused)" if dtype.hasobject else f"dtype {dtype}"
        raise ValueError(f"{what} holds {what_it_holds}; expected plain numbers")
    if any(n < 0 for n in shape):
        raise ValueError(f"{what} has a negative dimension in its shape {shape}")
    n_bytes = math.prod(shape) * dtype.itemsize
    available = size - file.tell()
    if n_bytes != available:  # checked before allocating: a forged header cannot ask for huge memory
        raise ValueError(f"{what} claims shape {shape} of {dtype} ({n_bytes} bytes) but holds {available} bytes")
    data = file.read(n_bytes)
    if len(data) != n_bytes:
        raise ValueError(f"{what} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C").copy()


def _read_json(path: Path) -> tuple[dict, dict]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"it is not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError("it is not valid JSON (nested too deeply)") from None
    if not isinstance(document, dict):
        raise ValueError("the top level is not an object")
    header = {name: document.get(name) for name in _HEADER + _OPTIONAL_HEADER}
    dtype_name = document.get("dtype", "float64")
    if dtype_name not in _DTYPES:
        raise ValueError(f"dtype {dtype_name!r} is not one of {_DTYPES}")
    dtype = np.dtype(dtype_name)
    arrays = {}
    for name in _FIELDS + _OPTIONAL_FIELDS:
        entry = document.get(name)
        arrays[name] = None if entry is None else _json_array(entry, name, dtype)
    return header, arrays


def _json_array(entry, name: str, dtype: np.dtype) -> np.ndarray:
    if not isinstance(entry, dict) or "shape" not in entry or "data" not in entry:
        raise ValueError(f"field {name!r} must be an object with 'shape' and 'data'")
    shape, data = entry["shape"], entry["data"]
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise ValueError(f"field {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    if not isinstance(data, list) or not all(
        isinstance(value, (int, float)) and not isinstance(value, bool) for value in data
    ):
        raise ValueError(f"field {name!r}: data must be a flat list of numbers")
    if len(data) != math.prod(shape):
        raise ValueError(f"field {name!r}: shape {shape} needs {math.prod(shape)} values, data has {len(data)}")
    try:
        values = np.asarray(data, dtype=np.float64)
    except OverflowError:
        raise ValueError(f"field {name!r} has an integer too large for a float") from None
    if np.any(np.abs(values[np.isfinite(values)]) > np.finfo(dtype).max):
        raise ValueError(f"field {name!r} has values beyond the range of {dtype}")
    return values.astype(dtype).reshape(shape)
