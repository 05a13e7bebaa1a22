"""save/load round-trips exactly, never uses pickle, and rejects malformed files clearly."""

import json
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesgmm
from tests._references import COVARIANCE_TYPES


def _params(covariance_type, dtype=np.float64):
    result = bayesgmm.em_fit(np.random.default_rng(0).normal(size=(50, 2)), 2, covariance_type=covariance_type)
    return jax.tree.map(lambda leaf: leaf.astype(dtype), result.params)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_is_exact(tmp_path, suffix, covariance_type):
    params = _params(covariance_type)
    path = tmp_path / f"params{suffix}"
    bayesgmm.save(params, path)
    loaded = bayesgmm.load(path)
    assert loaded.covariance_type == covariance_type
    for name in ("weights", "means", "scale"):
        original, restored = np.asarray(getattr(params, name)), np.asarray(getattr(loaded, name))
        assert restored.dtype == original.dtype
        np.testing.assert_array_equal(restored, original)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # ordinary permissions, not mkstemp's 0600


def test_float32_and_batched_round_trip(tmp_path):
    with jax.enable_x64(False):
        params = _params("full", np.float32)
    batch = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, params)
    for suffix in (".json", ".npz"):
        bayesgmm.save(batch, tmp_path / f"b{suffix}")
        loaded = bayesgmm.load(tmp_path / f"b{suffix}")
        assert loaded.batch_shape == (2,)
        np.testing.assert_array_equal(np.asarray(loaded.scale), np.asarray(batch.scale))


def _write_json(path, document):
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p / "x.json").write_text("{not json") and p / "x.json", "not a valid bayesgmm parameter file"),
        (lambda p: _write_json(p / "x.json", [1, 2]), "top level is not an object"),
        (lambda p: _write_json(p / "x.json", {"format": "other"}), "not a bayesgmm parameter file"),
        (lambda p: _write_json(p / "x.json", {"format": "bayesgmm.GMMParams", "version": 99}), "format version 99"),
        (
            lambda p: _write_json(p / "x.json", {"format": "bayesgmm.GMMParams", "version": 1, "covariance_type": "x"}),
            "unknown covariance_type",
        ),
        (
            lambda p: _write_json(
                p / "x.json", {"format": "bayesgmm.GMMParams", "version": 1, "covariance_type": "diag"}
            ),
            "lacks the field",
        ),
        (lambda p: (p / "x.npz").write_bytes(b"garbage") and p / "x.npz", "not a valid bayesgmm parameter file"),
        (lambda p: (p / "x.pkl").write_bytes(b"x") and p / "x.pkl", "unknown file extension"),
    ],
)
def test_malformed_files_give_clear_errors(tmp_path, make, message):
    with pytest.raises(ValueError, match=message):
        bayesgmm.load(make(tmp_path))


def test_npz_with_pickled_object_is_refused(tmp_path):
    """An .npz holding an object array (which needs pickle) is rejected, not unpickled."""
    path = tmp_path / "evil.npz"
    np.savez(
        path,
        format=np.array("bayesgmm.GMMParams"),
        version=np.array(1),
        covariance_type=np.array("diag"),
        weights=np.array([object()], dtype=object),
    )
    with pytest.raises(ValueError, match="not a valid bayesgmm parameter file"):
        bayesgmm.load(path)
    assert zipfile.is_zipfile(path)


def test_shape_mismatch_in_file_is_a_value_error(tmp_path):
    params = _params("diag")
    bayesgmm.save(params, tmp_path / "p.json")
    document = json.loads((tmp_path / "p.json").read_text())
    document["scale"] = {"shape": [3], "data": [1.0, 1.0, 1.0]}
    _write_json(tmp_path / "p.json", document)
    with pytest.raises(ValueError, match="scale for covariance_type='diag'"):
        bayesgmm.load(tmp_path / "p.json")


def test_save_refuses_other_objects_and_extensions(tmp_path):
    with pytest.raises(ValueError, match="expects a GMMParams"):
        bayesgmm.save({"weights": 1}, tmp_path / "x.json")
    with pytest.raises(ValueError, match="use .npz or .json"):
        bayesgmm.save(_params("full"), tmp_path / "x.pickle")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- families


def _t_params(covariance_type, dof):
    X = np.random.default_rng(1).standard_t(5, size=(60, 2)) + np.repeat([[0.0, 0.0], [8.0, 8.0]], 30, axis=0)
    return bayesgmm.em_fit(X, 2, covariance_type=covariance_type, family="student_t", dof=dof, max_iter=20).params


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize(
    "covariance_type, dof, dof_mode",
    [("full", None, "component"), ("diag", "shared", "shared"), ("spherical", 7.5, "fixed")],
)
def test_student_t_round_trip_keeps_family_dof_and_mode(tmp_path, suffix, covariance_type, dof, dof_mode):
    params = _t_params(covariance_type, dof)
    assert params.dof_mode == dof_mode
    path = tmp_path / f"t{suffix}"
    bayesgmm.save(params, path)
    loaded = bayesgmm.load(path)
    assert (loaded.family, loaded.dof_mode, loaded.covariance_type) == ("student_t", dof_mode, covariance_type)
    for name in ("weights", "means", "scale", "dof"):
        np.testing.assert_array_equal(np.asarray(getattr(loaded, name)), np.asarray(getattr(params, name)))
    assert loaded.n_parameters == params.n_parameters  # the BIC's count survives the round trip
    X = np.random.default_rng(2).normal(size=(5, 2))
    np.testing.assert_array_equal(np.asarray(loaded.log_prob(X)), np.asarray(params.log_prob(X)))


def test_gaussian_files_stay_version_1_and_old_files_load_as_gaussian(tmp_path):
    params = _params("diag")
    bayesgmm.save(params, tmp_path / "g.json")
    document = json.loads((tmp_path / "g.json").read_text())
    assert document["version"] == 1 and "family" not in document and "dof" not in document
    bayesgmm.save(params, tmp_path / "g.npz")
    with zipfile.ZipFile(tmp_path / "g.npz") as archive:
        assert sorted(archive.namelist()) == sorted(
            f"{name}.npy" for name in ("format", "version", "covariance_type", "weights", "means", "scale")
        )
    for path in (tmp_path / "g.json", tmp_path / "g.npz"):
        loaded = bayesgmm.load(path)
        assert (loaded.family, loaded.dof, loaded.dof_mode) == ("gaussian", None, "component")


def _t_document(tmp_path):
    bayesgmm.save(_t_params("diag", None), tmp_path / "t.json")
    return json.loads((tmp_path / "t.json").read_text())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(family="cauchy"), "unknown family 'cauchy'"),
        (lambda d: d.update(dof_mode="some"), "unknown dof_mode 'some'"),
        (lambda d: d.pop("dof"), r"lacks the field\(s\) \['dof'\]"),
        (lambda d: d.update(dof={"shape": [3], "data": [1.0, 2.0, 3.0]}), "dof must have shape"),
        (lambda d: d.update(dof={"shape": [2], "data": [4.0, -1.0]}), "must be positive"),
        (lambda d: d.update(family="gaussian"), "degrees of freedom"),
        (lambda d: d.update(version=1), "need version 2"),
    ],
)
def test_malformed_student_t_files_give_clear_errors(tmp_path, edit, message):
    document = _t_document(tmp_path)
    assert document["version"] == 2 and document["family"] == "student_t"
    edit(document)
    with pytest.raises(ValueError, match=message):
        bayesgmm.load(_write_json(tmp_path / "t.json", document))
