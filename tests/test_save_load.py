"""Fit.save / Fit.load give back the same fit: dtypes, category order, index, draws; bad files."""

from __future__ import annotations

import json
import os
from decimal import Decimal

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.fit_result import FitFileError, check_output_path, decode_table, encode_table

SETTINGS = bm.SamplerSettings(draws=50, tune=50, chains=2, random_seed=3, progressbar=False,
                              likelihood="collapsed", backend="c")
# Every kind of column a model can use, each a predictor of the one small model below.
COLUMNS = ["x", "cz", "ci", "co", "n64", "bo", "st", "sp", "row", "a/b", "g"]


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n, J = 60, 6

    def pick(values):
        return [values[k] for k in rng.integers(0, len(values), n)]

    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            # The reference is the first category, "zeta", not the alphabetically first.
            "cz": pd.Categorical(pick(["zeta", "alpha"]), categories=["zeta", "alpha"]),
            "ci": pd.Categorical(pick([3, 1, 2]), categories=[3, 1, 2]),
            "co": pd.Categorical(pick(["low", "mid", "high"]),
                                 categories=["low", "mid", "high"], ordered=True),
            "n64": pd.array(rng.integers(0, 5, n), dtype="Int64"),
            "bo": pd.array(pick([True, False]), dtype="boolean"),
            "st": pd.array(pick(["b", "c", "a"]), dtype="string"),
            "sp": pick(["q", "p"]),  # pandas' default text dtype
            "row": rng.normal(size=n),
            "a/b": rng.normal(size=n),
            "g": np.repeat([f"s{j}" for j in range(J)], n // J),
        },
        index=pd.Index(rng.permutation(n) * 7 + 1000, name="obs"),
    )


FORMULA = "y ~ x + cz + ci + co + n64 + bo + st + sp + row + `a/b` + (1 | g)"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    data = _data()
    fit = bm.fit(bm.Spec.from_formula(FORMULA, data), data, settings=SETTINGS)
    path = fit.save(tmp_path_factory.mktemp("fit") / "fit.nc")
    return fit, path, bm.Fit.load(path), data


@pytest.mark.parametrize("col", COLUMNS)
def test_every_column_comes_back_with_its_dtype_and_coding(saved, col):
    fit, _, back, _ = saved
    pd.testing.assert_series_equal(back.design.data[col], fit.design.data[col])
    assert back.design.data[col].dtype == fit.design.data[col].dtype
    if col in fit.design.levels:
        assert back.design.levels[col] == fit.design.levels[col]


def test_the_coding_reference_is_the_first_category(saved):
    _, _, back, _ = saved
    assert back.design.levels["cz"] == ("zeta", "alpha")
    assert back.design.levels["ci"] == ("3", "1", "2")
    assert back.design.levels["co"] == ("low", "mid", "high")


def test_row_index_and_design_come_back(saved):
    fit, _, back, data = saved
    pd.testing.assert_index_equal(back.design.row_labels, data.index)
    pd.testing.assert_frame_equal(back.design.data, fit.design.data)
    assert back.design.fixed_names == fit.design.fixed_names
    np.testing.assert_array_equal(back.design.X, fit.design.X)
    np.testing.assert_array_equal(back.design.Zq, fit.design.Zq)
    np.testing.assert_array_equal(back.posterior["beta"], fit.posterior["beta"])


@pytest.mark.parametrize("kind", ["mean", "y"])
def test_predict_from_the_loaded_fit_equals_predict_from_the_fit(saved, kind):
    fit, _, back, data = saved
    rows = data.drop(columns="y").iloc[::3].copy()
    rows.loc[rows.index[:2], "g"] = "a new cluster"
    a = bm.predict(fit, rows, kind=kind, random_seed=5).draws.to_numpy()
    b = bm.predict(back, rows, kind=kind, random_seed=5).draws.to_numpy()
    np.testing.assert_array_equal(a, b)


def test_save_over_the_file_just_loaded_and_overwrite_rule(saved, tmp_path):
    _, path, _, _ = saved
    target = tmp_path / "again.nc"
    target.write_bytes(path.read_bytes())
    back = bm.Fit.load(target)
    before = target.read_bytes()
    with pytest.raises(FitFileError, match=r"exists; pass overwrite=True"):
        back.save(target)
    assert target.read_bytes() == before  # untouched
    back.save(target, overwrite=True)
    again = bm.Fit.load(target)
    np.testing.assert_array_equal(again.posterior["u"], back.posterior["u"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.nc"]  # no temporary left


def test_check_output_path(tmp_path):
    assert check_output_path(tmp_path / "new.nc") == tmp_path / "new.nc"
    with pytest.raises(FitFileError, match="is a folder"):
        check_output_path(tmp_path)
    with pytest.raises(FitFileError, match="does not exist; create it"):
        check_output_path(tmp_path / "missing" / "fit.nc")
    (tmp_path / "taken.nc").write_text("x")
    with pytest.raises(FitFileError, match="overwrite=True"):
        check_output_path(tmp_path / "taken.nc")
    assert check_output_path(tmp_path / "taken.nc", overwrite=True)
    (tmp_path / "dir.nc").mkdir()
    with pytest.raises(FitFileError, match="is a folder"):
        check_output_path(tmp_path / "dir.nc", overwrite=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_check_output_path_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(FitFileError, match="is not writable"):
            check_output_path(folder / "fit.nc")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda good: b"", "is empty"),
        (lambda good: good[: len(good) // 2], "truncated, corrupted"),
        (lambda good: good[:100], "truncated, corrupted"),
        (lambda good: b"y,x\n1,2\n", "truncated, corrupted"),
        (lambda good: bytes(range(256)) * 40, "truncated, corrupted"),
    ],
)
def test_bad_files_give_a_clear_error(saved, tmp_path, make, match):
    _, path, _, _ = saved
    bad = tmp_path / "bad.nc"
    bad.write_bytes(make(path.read_bytes()))
    with pytest.raises(FitFileError, match=match):
        bm.Fit.load(bad)


def test_missing_file_and_foreign_netcdf(tmp_path):
    with pytest.raises(FitFileError, match="does not exist"):
        bm.Fit.load(tmp_path / "nothing.nc")
    other = tmp_path / "other.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(FitFileError, match="not written by bayesmix"):
        bm.Fit.load(other)


def test_a_changed_draw_fails_the_checksum(saved, tmp_path):
    _, path, _, _ = saved
    bad = tmp_path / "changed.nc"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        beta = f["posterior"]["beta"]
        beta[0, 0, 0] = beta[0, 0, 0] + 1e-9
    with pytest.raises(FitFileError, match="checksum"):
        bm.Fit.load(bad)


def test_a_changed_data_value_fails_the_checksum(saved, tmp_path):
    _, path, _, _ = saved
    bad = tmp_path / "changed.nc"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        names = [c["name"] for c in json.loads(f["data"].attrs["table"])["columns"]]
        codes = f["data"][f"c{names.index('cz')}"]
        codes[0] = 1 - codes[0]
    with pytest.raises(FitFileError, match="checksum"):
        bm.Fit.load(bad)


def _through_netcdf(df: pd.DataFrame, path) -> pd.DataFrame:
    encode_table(df).to_netcdf(path, engine="h5netcdf")
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return decode_table(ds.load())


def test_table_codec_round_trips_missing_values_times_and_indexes(tmp_path):
    df = pd.DataFrame(
        {
            "Int": pd.array([1, None, 3], dtype="Int64"),
            "Float": pd.array([0.5, None, 1.5], dtype="Float64"),
            "bool": pd.array([True, None, False], dtype="boolean"),
            "string": pd.array(["a", None, "c"], dtype="string"),
            "str": pd.Series(["a", None, "c"], dtype="str"),
            "f": [1.0, np.nan, 2.0],
            "i32": np.array([1, 2, 3], dtype=np.int32),
            "u8": np.array([1, 2, 3], dtype=np.uint8),
            "b": [True, False, True],
            "when": pd.to_datetime(["2020-01-01", None, "2021-05-06"]),
            "objnum": pd.Series([10, 9, "x"], dtype=object),
            "objtext": pd.Series(["10", "9", "x"], dtype=object),
            "catf": pd.Categorical([1.5, None, 0.5], categories=[1.5, 0.5]),
            "catb": pd.Categorical([True, False, True], categories=[True, False]),
            "catdt": pd.Categorical(pd.to_datetime(["2020-01-01", "2019-01-01", "2020-01-01"])),
        },
        index=pd.MultiIndex.from_arrays([["a", "b", "c"], [3, 2, 1]], names=["k", None]),
    )
    pd.testing.assert_frame_equal(_through_netcdf(df, tmp_path / "t.nc"), df)
    idx = df.set_axis(pd.RangeIndex(10, 40, 10, name="r"))
    back = _through_netcdf(idx, tmp_path / "r.nc")
    assert isinstance(back.index, pd.RangeIndex)
    pd.testing.assert_frame_equal(back, idx)
    text_index = df.set_axis(pd.Index(["x", "y", "z"], dtype="string", name="id"))
    pd.testing.assert_frame_equal(_through_netcdf(text_index, tmp_path / "s.nc"), text_index)


def test_a_column_that_cannot_be_stored_is_named():
    with pytest.raises(FitFileError, match="'price' has values of dtype object"):
        encode_table(pd.DataFrame({"price": [Decimal("1.5"), Decimal("2")]}))
