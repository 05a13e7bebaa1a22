"""Save and load ``GMMParams`` as ``.npz`` or ``.json``; never pickle.

Files are written atomically: to a temporary file in the same folder, then renamed.
Both formats round-trip exactly (JSON stores floats by their shortest repr, which
Python reads back to the same bits; the dtype is recorded).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from bayesgmm.covariance import COVARIANCE_TYPES
from bayesgmm.params import GMMParams

FORMAT = "bayesgmm.GMMParams"
VERSION = 1
_FIELDS = ("weights", "means", "scale")


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


def save(params: GMMParams, path) -> None:
    """Write ``params`` to ``path`` (``.npz`` or ``.json``), atomically.

    Examples
    --------
    >>> import tempfile, os
    >>> from bayesgmm import GMMParams, save, load
    >>> params = GMMParams.from_covariances([1.0], [[0.0, 1.0]], [[1.0, 2.0]], "diag")
    >>> path = os.path.join(tempfile.mkdtemp(), "params.json")
    >>> save(params, path)
    >>> load(path).covariance_type
    'diag'
    """
    if not isinstance(params, GMMParams):
        raise ValueError(f"save expects a GMMParams, got {type(params).__name__}.")
    path = Path(path)
    arrays = {name: np.asarray(getattr(params, name)) for name in _FIELDS}
    suffix = path.suffix.lower()
    if suffix == ".npz":

        def write(file):
            np.savez(
                file,
                format=np.array(FORMAT),
                version=np.array(VERSION),
                covariance_type=np.array(params.covariance_type),
                **arrays,
            )
    elif suffix == ".json":
        document = {
            "format": FORMAT,
            "version": VERSION,
            "covariance_type": params.covariance_type,
            "dtype": str(arrays["means"].dtype),
            **{
                name: {"shape": list(a.shape), "data": a.astype(np.float64).ravel().tolist()}
                for name, a in arrays.items()
            },
        }

        def write(file):
            file.write(json.dumps(document).encode())
    else:
        raise ValueError(f"Unknown file extension {path.suffix!r} for {path}; use .npz or .json.")
    atomic_write(path, write)


def load(path) -> GMMParams:
    """Read ``GMMParams`` written by ``save`` (``.npz`` or ``.json``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                fields = {name: archive[name] for name in archive.files}
            header = {
                name: fields.pop(name).item() for name in ("format", "version", "covariance_type") if name in fields
            }
            arrays = {name: fields.get(name) for name in _FIELDS}
        elif suffix == ".json":
            document = json.loads(path.read_text())
            if not isinstance(document, dict):
                raise ValueError("the top level is not an object")
            header = {name: document.get(name) for name in ("format", "version", "covariance_type")}
            dtype = np.dtype(document.get("dtype", "float64"))
            if dtype.kind != "f":
                raise ValueError(f"dtype {dtype} is not a float type")
            arrays = {}
            for name in _FIELDS:
                entry = document.get(name)
                if entry is None:
                    arrays[name] = None
                    continue
                arrays[name] = np.asarray(entry["data"], dtype=np.float64).reshape(entry["shape"]).astype(dtype)
        else:
            raise ValueError(f"unknown file extension {path.suffix!r}; use .npz or .json")
    except FileNotFoundError:
        raise
    except ValueError as error:
        raise ValueError(f"{path} is not a valid bayesgmm parameter file: {error}") from None
    except Exception as error:  # zip, JSON and key errors from malformed files
        raise ValueError(f"{path} is not a valid bayesgmm parameter file: {type(error).__name__}: {error}") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a bayesgmm parameter file (format {header.get('format')!r}).")
    if header.get("version") != VERSION:
        raise ValueError(f"{path} has format version {header.get('version')!r}; this bayesgmm reads {VERSION}.")
    if header.get("covariance_type") not in COVARIANCE_TYPES:
        raise ValueError(f"{path} has an unknown covariance_type {header.get('covariance_type')!r}.")
    missing = [name for name, value in arrays.items() if value is None]
    if missing:
        raise ValueError(f"{path} lacks the field(s) {missing}.")
    for name, value in arrays.items():
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: field {name!r} must hold finite floats.")
    import jax.numpy as jnp

    return GMMParams(*(jnp.asarray(arrays[name]) for name in _FIELDS), covariance_type=header["covariance_type"])
