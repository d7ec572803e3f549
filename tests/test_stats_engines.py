"""Per-cluster statistics from Dask DataFrames and through DuckDB equal the in-memory ones."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from conftest import MODELS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmix as bm
from bayesmix.errors import BayesmixError, DataError
from bayesmix.stats import cluster_stats as design_stats
from bayesmix.stats.sources import stats_of_source

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")


def _spec_data(name: str):
    spec = bm.Spec.from_file(MODELS / f"{name}.toml")
    return spec, bm.load_data(spec)


def _assert_equal_stats(got, ref, rtol=1e-10):
    got = got.to_scaling(ref.scaling)
    np.testing.assert_array_equal(got.n, ref.n)
    scale = np.abs(ref.M).max()
    np.testing.assert_allclose(got.M, ref.M, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def hsb():
    spec, data = _spec_data("hsb")
    return spec, data, design_stats(bm.build_design(spec, data))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(1, 7184), min_size=0, max_size=12, unique=True),
       shuffle=st.booleans())
def test_dask_stats_equal_in_memory_for_any_partitioning(hsb, cuts, shuffle):
    """Any split of the rows into partitions (clusters cut across them, rows in any order)."""
    spec, data, ref = hsb
    if shuffle:
        data = data.sample(frac=1.0, random_state=len(cuts))
    bounds = [0, *sorted(cuts), len(data)]
    parts = [data.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    ddf = dd.from_delayed([_delayed(p) for p in parts], meta=data.iloc[:0])
    import dask

    with dask.config.set(scheduler="synchronous"):
        got = bm.cluster_stats(spec, ddf)
    _assert_equal_stats(got, ref)


def _delayed(frame):
    import dask

    return dask.delayed(lambda f: f)(frame)


def test_transforms_and_categoricals_through_dask_and_duckdb(tmp_path):
    """Group-centring, grand means, poly, an ordered factor: constants of the whole data."""
    spec, data = _spec_data("hsb_contextual")
    ref = design_stats(bm.build_design(spec, data))
    import dask

    with dask.config.set(scheduler="synchronous"):
        got = bm.cluster_stats(spec, dd.from_pandas(data, npartitions=7))
    _assert_equal_stats(got, ref)
    folder = tmp_path / "hsb"
    folder.mkdir()
    for k, part in enumerate(np.array_split(data.index.to_numpy(), 5)):
        data.loc[part].to_parquet(folder / f"part-{k}.parquet")
    got = bm.cluster_stats(spec, str(folder / "*.parquet"), chunk_rows=997)
    _assert_equal_stats(got, ref)
    got = bm.cluster_stats(spec, sorted(folder.glob("*.parquet")), chunk_rows=500)
    _assert_equal_stats(got, ref)


@pytest.mark.slow
def test_a_real_local_cluster_with_two_worker_processes(hsb):
    distributed = pytest.importorskip("distributed")
    spec, data, ref = hsb
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        ddf = dd.from_pandas(data, npartitions=6)
        got = bm.cluster_stats(spec, ddf)
        reml = bm.fit_reml(spec, ddf)
    _assert_equal_stats(got, ref)
    _assert_reml_equal(reml, bm.fit_reml(spec, data))


def _assert_reml_equal(got, ref):
    assert got.design is None and got.nobs == ref.nobs
    for name in ("beta", "se", "sd_u"):
        pd.testing.assert_series_equal(getattr(got, name), getattr(ref, name), rtol=1e-6)
    pd.testing.assert_frame_equal(got.corr_u, ref.corr_u, rtol=1e-6)
    pd.testing.assert_frame_equal(got.u, ref.u, rtol=1e-5, atol=1e-7)
    assert got.sigma == pytest.approx(ref.sigma, rel=1e-7)
    assert got.criterion == pytest.approx(ref.criterion, rel=1e-10)


@pytest.mark.parametrize("formula", [
    "Reaction ~ poly(Days, 2) + (Days | Subject)",
    "Reaction ~ scale(Days) + log(Days + 1) + (1 | Subject)",
    "log(Reaction) ~ I(Days^2) + group(Days) + (1 | Subject)",
])
def test_power_sums_merged_across_partitions_give_the_whole_data_constants(formula):
    """poly() and scale() constants from per-partition power sums about different shifts."""
    spec = bm.Spec.from_formula(formula)
    data = bm.load_data(bm.Spec.from_file(MODELS / "sleepstudy.toml"))
    data = data.sort_values("Days", kind="stable")  # partitions with very different means
    ref = design_stats(bm.build_design(spec, data))
    import dask

    with dask.config.set(scheduler="synchronous"):
        got = bm.cluster_stats(spec, dd.from_pandas(data, npartitions=6, sort=False))
    _assert_equal_stats(got, ref)


def test_reml_from_files_and_dask_equals_the_in_memory_fit(tmp_path):
    spec, data = _spec_data("sleepstudy")
    ref = bm.fit_reml(spec, data)
    path = tmp_path / "sleep.parquet"
    data.to_parquet(path)
    _assert_reml_equal(bm.fit_reml(spec, path), ref)             # chunks (pandas / pyarrow)
    _assert_reml_equal(bm.fit_reml(spec, [path, path][:1]), ref)  # DuckDB (a list)
    import dask

    with dask.config.set(scheduler="synchronous"):
        _assert_reml_equal(bm.fit_reml(spec, dd.from_pandas(data, npartitions=4)), ref)
    ml = bm.fit_reml(spec, data, method="ML")
    with dask.config.set(scheduler="synchronous"):
        got = bm.fit_reml(spec, dd.from_pandas(data, npartitions=3), method="ML")
    _assert_reml_equal(got, ml)


def test_shifted_data_keep_their_digits_through_dask():
    """Sums of standardised columns: Days + 1e6 gives the same statistics and fit."""
    spec, data = _spec_data("sleepstudy")
    shifted = data.assign(Days=data["Days"] + 1e6)
    ref = bm.fit_reml(spec, data)
    import dask

    with dask.config.set(scheduler="synchronous"):
        got = bm.fit_reml(spec, dd.from_pandas(shifted, npartitions=5))
    # What does not depend on where Days starts is unchanged (the intercept's SD does)
    assert got.beta["g10 (Days)"] == pytest.approx(ref.beta["g10 (Days)"], rel=1e-8)
    assert got.se["g10 (Days)"] == pytest.approx(ref.se["g10 (Days)"], rel=1e-6)
    assert got.sigma == pytest.approx(ref.sigma, rel=1e-8)
    assert got.sd_u.iloc[1] == pytest.approx(ref.sd_u.iloc[1], rel=1e-6)
    assert got.criterion == pytest.approx(ref.criterion, rel=1e-10)


def test_errors_name_the_column_row_and_partition(tmp_path):
    spec, data = _spec_data("sleepstudy")
    import dask

    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(DataError, match="no column 'Days'"):
            bm.cluster_stats(spec, dd.from_pandas(data.drop(columns="Days"), npartitions=2))
        holes = data.copy()
        holes.loc[100, "Reaction"] = np.nan
        ddf = dd.from_pandas(holes, npartitions=3)
        with pytest.raises(DataError, match=r"'Reaction'.*row \d+ of partition \d.*missing="):
            bm.cluster_stats(spec, ddf)
        with pytest.warns(UserWarning, match="dropped 1 of 180"):
            got = stats_of_source(spec, ddf, missing="drop")[0]
    assert got.n.sum() == 179
    path = tmp_path / "sleep.parquet"
    data.to_parquet(path)
    with pytest.raises(DataError, match="has no column 'Dayz'"):
        bm.cluster_stats(bm.Spec.from_formula("Reaction ~ Dayz + (1 | Subject)"), [path])
    with pytest.raises(DataError, match="cannot read"):
        bm.cluster_stats(spec, [tmp_path / "absent.parquet"])
    with pytest.raises(DataError, match="engine must be"):
        bm.cluster_stats(spec, path, engine="spark")


def test_what_cannot_be_distributed_says_so():
    crossed, pdata = _spec_data("penicillin_crossed")
    with pytest.raises(BayesmixError, match="one grouping factor"):
        bm.fit_reml(crossed, dd.from_pandas(pdata, npartitions=2))
    sleep, sdata = _spec_data("sleepstudy")
    with pytest.raises(DataError, match=r"posterior.*fit_reml\(spec, ddf\).*compute\(\)"):
        bm.fit(sleep, dd.from_pandas(sdata, npartitions=2))


@pytest.mark.slow
def test_duckdb_streams_a_parquet_file_larger_than_the_memory_it_is_given(tmp_path):
    """16M rows (366 MB as float64 columns), read with a 64 MB DuckDB limit and one DuckDB
    thread in 65k-row batches: the process's peak memory (VmHWM, reset after the imports)
    grows by much less than the data (measured here: 140 MB at 4M rows, 155 MB at 12M: the
    readers' buffers, not the rows), and the statistics equal the sums of the simulated rows
    computed here."""
    rng = np.random.default_rng(7)
    n, J = 16_000_000, 5_000
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(size=J)[g] + rng.normal(size=n)
    frame = pd.DataFrame({"y": y, "x": x, "g": g})
    path = tmp_path / "big.parquet"
    frame.to_parquet(path, row_group_size=500_000)
    # reference sums of [1, x, 1 (Z), y] per cluster, raw scale
    W = np.column_stack([np.ones(n), x, np.ones(n), y])
    ref = np.zeros((J, 4, 4))
    for a in range(4):
        for b in range(4):
            ref[:, a, b] = np.bincount(g, W[:, a] * W[:, b], minlength=J)
    del frame, W, x, y
    script = textwrap.dedent(f"""
        import json, numpy as np
        import bayesmix as bm
        from bayesmix.stats.stream import scan_levels, stream_cluster_stats
        import duckdb, pyarrow  # imported before the baseline is read
        spec = bm.Spec.from_formula("y ~ x + (1 | g)")
        def status(key):  # kB
            line = next(v for v in open("/proc/self/status") if v.startswith(key))
            return int(line.split()[1])
        with open("/proc/self/clear_refs", "w") as fh:  # the peak (VmHWM) restarts here
            fh.write("5")
        base = status("VmRSS:")
        import bayesmix.stats.duckdb_engine as sd
        sd.MEMORY_LIMIT, sd.THREADS = "64MB", 1
        levels = scan_levels({str(path)!r}, spec, chunk_rows=65_536, engine="duckdb")
        st = stream_cluster_stats({str(path)!r}, spec, levels=levels, chunk_rows=65_536,
                                  engine="duckdb")
        peak = status("VmHWM:")
        order = np.argsort(np.array(levels.clusters, dtype=int))
        print(json.dumps({{"grown_mb": (peak - base) / 1024, "M": st.raw_M()[order].tolist()}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    raw_mb = n * 3 * 8 / 2**20
    assert res["grown_mb"] < 0.6 * raw_mb, (res["grown_mb"], raw_mb)
    np.testing.assert_allclose(np.array(res["M"]), ref, rtol=1e-9, atol=1e-6)
