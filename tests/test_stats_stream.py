"""Streaming per-cluster statistics from CSV / Parquet equal those of the in-memory design."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODELS

import bayesmix as bm
from bayesmix.errors import DataError
from bayesmix.stats import cluster_stats
from bayesmix.stats.stream import scan_levels, stream_cluster_stats


@pytest.mark.parametrize("name", ["dung", "sleepstudy", "hsb", "cross_level"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_streamed_stats_equal_the_design_stats(tmp_path, name, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    spec = bm.Spec.from_file(MODELS / f"{name}.toml")
    data = bm.api.load_data(spec)
    ref = cluster_stats(bm.build_design(spec, data))
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        data.to_csv(path, index=False)
    else:
        data.to_parquet(path)
    st = stream_cluster_stats(path, spec, chunk_rows=101)  # many chunks, clusters split
    assert (st.p, st.q) == (ref.p, ref.q)
    # Scaled by the first chunk's moments; mapped onto the design's scale they are equal.
    st = st.to_scaling(ref.scaling)
    np.testing.assert_array_equal(st.n, ref.n)
    np.testing.assert_allclose(st.M, ref.M, rtol=1e-12, atol=1e-9 * np.abs(ref.M).max())


def test_levels_found_by_a_first_pass_match_the_design(tmp_path):
    spec = bm.Spec.from_file(MODELS / "hsb.toml")
    data = bm.api.load_data(spec)
    path = tmp_path / "hsb.csv"
    data.to_csv(path, index=False)
    levels = scan_levels(path, spec, chunk_rows=500)
    design = bm.build_design(spec, data)
    assert levels.clusters == design.clusters
    assert levels.categorical == {"Sector": ("Public", "Catholic")}


def test_categorical_level_absent_from_a_chunk_is_still_coded(tmp_path):
    # Sector "Catholic" appears only in the last chunk: the levels come from the first pass.
    spec = bm.Spec.from_file(MODELS / "hsb.toml")
    data = bm.api.load_data(spec).sort_values("Sector", key=lambda s: s != "Public")
    path = tmp_path / "sorted.csv"
    data.to_csv(path, index=False)
    st = stream_cluster_stats(path, spec, chunk_rows=1000)
    ref = cluster_stats(bm.build_design(spec, data))
    st = st.to_scaling(ref.scaling)
    np.testing.assert_allclose(st.M, ref.M, rtol=1e-12, atol=1e-9 * np.abs(ref.M).max())


def test_level_missing_from_given_levels_is_an_error_not_zeros(tmp_path):
    spec = bm.Spec.from_file(MODELS / "hsb.toml")
    data = bm.api.load_data(spec)
    path = tmp_path / "hsb.csv"
    data.to_csv(path, index=False)
    levels = scan_levels(path, spec)
    only_public = type(levels)(levels.clusters, {"Sector": ("Public",)})
    with pytest.raises(DataError, match="'Sector' takes values outside its known levels"):
        stream_cluster_stats(path, spec, levels=only_public)


def test_missing_values_raise_or_drop(tmp_path, dung_spec, dung_data):
    data = dung_data.copy()
    data.loc[3, "flies"] = np.nan
    path = tmp_path / "dung.csv"
    data.to_csv(path, index=False)
    with pytest.raises(DataError, match="missing values in 'flies'"):
        stream_cluster_stats(path, dung_spec, chunk_rows=5)
    with pytest.warns(UserWarning, match="dropped 1 of 18"):
        st = stream_cluster_stats(path, dung_spec, chunk_rows=5, missing="drop")
    ref = cluster_stats(bm.build_design(dung_spec, data.dropna()))
    np.testing.assert_allclose(st.to_scaling(ref.scaling).M, ref.M, rtol=1e-10, atol=1e-12)


def test_transformed_variables_stream_with_whole_file_constants(tmp_path):
    # The constants (school means, grand mean over schools, scale, poly) come from the first
    # pass's sums, not from each chunk: the streamed statistics equal the design's.
    spec = bm.Spec.from_equations("""
        I(MathAch / 10) = b0 + b1*group(SES) + b2*poly(Size, 2) + b3*scale(DISCLIM) + e
        b0 = g00 + g01*mean(SES) + g02*C(Sector, Treatment("Public")) + U0
        b1 = g10 + g11*grand(MEANSES) + U1
        b2 = g20
        b3 = g30
    """, cluster="School")
    data = bm.api.load_data(bm.Spec.from_file(MODELS / "hsb.toml"))
    design = bm.build_design(spec, data)
    ref = cluster_stats(design)
    path = tmp_path / "hsb.csv"
    data.to_csv(path, index=False)
    levels = scan_levels(path, spec, chunk_rows=333)
    for key, fit in design.fitted.items():
        got = levels.fitted[key]
        for name in ("grand", "center", "scale", "alpha", "norm2", "means"):
            if hasattr(fit, name) and getattr(fit, name) is not None:
                np.testing.assert_allclose(getattr(got, name), getattr(fit, name), rtol=1e-10,
                                           err_msg=f"{key}.{name}")
    st = stream_cluster_stats(path, spec, levels=levels, chunk_rows=257).to_scaling(ref.scaling)
    np.testing.assert_allclose(st.M, ref.M, rtol=1e-10, atol=1e-8 * np.abs(ref.M).max())
    with pytest.raises(DataError, match="lacks the constants of group"):
        stream_cluster_stats(path, spec, levels=bm.stats.stream.Levels(levels.clusters,
                                                                 levels.categorical))
    weighted = bm.Spec.from_formula("MathAch ~ SES + (1 | School)").with_options(
        weights=bm.Weights(level1="Size"))
    with pytest.raises(DataError, match="do not carry sampling weights"):
        stream_cluster_stats(path, weighted)


def test_ordered_factor_in_parquet_streams_with_polynomial_contrasts(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    data = pd.read_csv(MODELS.parent / "data" / "sleepstudy.csv", dtype={"Subject": str})
    # categories in an order that is not the sorted one, and ordered: contr.poly over it
    data["period"] = pd.Categorical(np.where(data["Days"] < 3, "early",
                                             np.where(data["Days"] < 7, "mid", "late")),
                                    categories=["early", "mid", "late"], ordered=True)
    spec = bm.Spec.from_formula("Reaction ~ period + (1 | Subject)")
    design = bm.build_design(spec, data)
    assert design.fixed_terms[1:] == ("period.L", "period.Q")
    path = tmp_path / "sleep.parquet"
    data.to_parquet(path)
    levels = scan_levels(path, spec, chunk_rows=50)
    assert levels.categorical["period"] == ("early", "mid", "late")
    ref = cluster_stats(design)
    st = stream_cluster_stats(path, spec, levels=levels, chunk_rows=37).to_scaling(ref.scaling)
    np.testing.assert_allclose(st.M, ref.M, rtol=1e-12, atol=1e-9 * np.abs(ref.M).max())
