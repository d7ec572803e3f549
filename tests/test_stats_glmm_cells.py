"""A GLMM fitted from binomial / Poisson cells summed where the rows are.

bayesmix.stats.glmm_cells.

The reference is the same model fitted from the rows in memory (whose Laplace fit equals
glmer's: tests/test_reml_laplace.py): the cells must give its estimates, SEs, SDs, modes and
log-likelihood, through Dask partitions and through files (pandas and DuckDB).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import MODELS

import bayesmix as bm
from bayesmix.errors import DataError

dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("duckdb")
pytest.importorskip("pyarrow")


def _cbpp_rows() -> pd.DataFrame:
    """lme4's cbpp as one Bernoulli row per animal (842 rows), shuffled."""
    spec = bm.Spec.from_file(MODELS / "cbpp.toml")
    cells = bm.load_data(spec)
    rows = cells.loc[cells.index.repeat(cells["size"])].copy()
    rank = rows.groupby(level=0).cumcount()
    rows["sick"] = (rank < rows["incidence"]).astype(int)
    rows = rows[["herd", "period", "sick"]].sample(frac=1.0, random_state=1)
    return rows.reset_index(drop=True)


def _poisson_rows(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, J = 3000, 30
    g = rng.integers(0, J, n)
    arm = rng.choice(["a", "b", "c"], n)
    t = rng.uniform(0.5, 3.0, n)
    eta = 0.2 + 0.4 * (arm == "b") - 0.3 * (arm == "c") + rng.normal(0, 0.5, J)[g]
    return pd.DataFrame({"g": g.astype(str), "arm": arm, "t": t,
                         "y": rng.poisson(t * np.exp(eta))})


BERNOULLI = bm.Spec.from_formula("sick ~ period + (1 | herd)", family="bernoulli",
                                 categorical=("period",))
POISSON = bm.Spec.from_formula("y ~ arm + (1 | g)", family="poisson", exposure="t")


def _assert_same_fit(got, ref):
    np.testing.assert_allclose(got.beta.to_numpy(), ref.beta.to_numpy(), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got.se.to_numpy(), ref.se.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.sd_u.to_numpy(), ref.sd_u.to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.loglik, ref.loglik, rtol=0, atol=1e-6)
    u_got = got.u.sort_index().to_numpy()
    np.testing.assert_allclose(u_got, ref.u.sort_index().to_numpy(), atol=1e-5)
    assert got.nobs == ref.nobs


def test_bernoulli_rows_through_dask_and_files_equal_the_rows_fit(tmp_path):
    rows = _cbpp_rows()
    ref = bm.fit_reml(BERNOULLI, rows)
    _assert_same_fit(bm.fit_reml(BERNOULLI, dd.from_pandas(rows, npartitions=5)), ref)
    paths = []
    for k, part in enumerate(np.array_split(np.arange(len(rows)), 4)):
        paths.append(tmp_path / f"part-{k}.parquet")
        rows.iloc[part].to_parquet(paths[-1])
    _assert_same_fit(bm.fit_reml(BERNOULLI, str(tmp_path / "*.parquet")), ref)  # DuckDB
    single = tmp_path / "all.csv"
    rows.to_csv(single, index=False)
    got = bm.fit_reml(BERNOULLI, single)  # pandas, chunk by chunk
    _assert_same_fit(got, ref)
    assert got.formula == BERNOULLI.to_formula()


def test_the_cells_are_lme4s_cbpp():
    """842 Bernoulli rows sum to cbpp's 56 binomial rows: glmer's fit of those (pinned)."""
    import json

    from bayesmix.stats.glmm_cells import glmm_cells

    cells = glmm_cells(BERNOULLI, dd.from_pandas(_cbpp_rows(), npartitions=3))
    assert len(cells.frame) == 56 and cells.rows == 842
    ref = json.loads((MODELS.parent / "tests" / "reference" / "glmm" / "cbpp_laplace.json")
                     .read_text())
    got = bm.fit_reml(cells.spec, cells.frame)
    np.testing.assert_allclose(got.beta.to_numpy(), [f["estimate"] for f in ref["fixed"]],
                               rtol=1e-5)
    np.testing.assert_allclose(got.se.to_numpy(), [f["se"] for f in ref["fixed"]], rtol=1e-4)
    # glmer's logLik is the binomial cells'; the rows' differs by Σ log C(n, k).
    np.testing.assert_allclose(got.loglik, ref["logLik"], atol=1e-4)
    np.testing.assert_allclose(got.loglik + cells.constant,
                               bm.fit_reml(BERNOULLI, _cbpp_rows()).loglik, atol=1e-6)


def test_data_already_in_cells_are_fitted_as_they_are(tmp_path):
    """cbpp's 56 binomial rows do not aggregate further; small, they are fitted as given."""
    spec = bm.Spec.from_file(MODELS / "cbpp.toml")
    data = bm.load_data(spec)
    ref = bm.fit_reml(spec, data)
    _assert_same_fit(bm.fit_reml(spec, dd.from_pandas(data, npartitions=2)), ref)


def test_poisson_with_exposure_through_dask_equals_the_rows_fit():
    rows = _poisson_rows()
    ref = bm.fit_reml(POISSON, rows)
    _assert_same_fit(bm.fit_reml(POISSON, dd.from_pandas(rows, npartitions=6)), ref)
    got = bm.fit_reml(POISSON, dd.from_pandas(rows, npartitions=4), nAGQ=7)
    _assert_same_fit(got, bm.fit_reml(POISSON, rows, nAGQ=7))


def test_what_cells_cannot_carry_says_so(tmp_path, monkeypatch):
    spec = bm.Spec.from_file(MODELS / "contraception.toml")  # age is continuous
    data = bm.load_data(spec)
    with monkeypatch.context() as m:  # 1,934 rows stand in for more than MAX_CELLS
        m.setattr("bayesmix.stats.glmm_cells.MAX_CELLS", 100)
        with pytest.raises(DataError, match=r"continuous level-1 predictors needs its rows"):
            bm.fit_reml(spec, dd.from_pandas(data, npartitions=3))
        path = tmp_path / "contraception.csv"
        data.to_csv(path, index=False)
        with pytest.raises(DataError, match=r"continuous level-1 predictors needs its rows"):
            bm.fit_reml(spec, path)
    rows = _cbpp_rows()
    rows["x"] = np.arange(len(rows)) % 3
    centred = bm.Spec.from_formula("sick ~ group(x) + (1 | herd)", family="bernoulli")
    with pytest.raises(DataError, match=r"group\(x\).*whole data"):
        bm.fit_reml(centred, dd.from_pandas(rows, npartitions=2))
    words = rows.assign(sick=np.where(rows["sick"] == 1, "yes", "no"))
    with pytest.raises(DataError, match=r"'sick' has type.*0/1"):
        bm.fit_reml(BERNOULLI, dd.from_pandas(words, npartitions=2))
    holes = rows.astype({"period": float})
    holes.loc[5, "period"] = np.nan
    with pytest.raises(DataError, match=r"'period' has 1 missing values"):
        bm.fit_reml(BERNOULLI, dd.from_pandas(holes, npartitions=2))
    bad = rows.assign(sick=rows["sick"] * 2)
    with pytest.raises(DataError, match="must be 0 or 1"):
        bm.fit_reml(BERNOULLI, dd.from_pandas(bad, npartitions=2))


@pytest.mark.slow
def test_posterior_from_dask_cells_equals_the_in_memory_posterior():
    """bm.fit on a Dask DataFrame samples the cells' model: the rows' posterior."""
    rows = _cbpp_rows()
    kwargs = dict(draws=500, tune=500, chains=2, random_seed=3, progressbar=False)
    got = bm.fit(BERNOULLI, dd.from_pandas(rows, npartitions=4), **kwargs)
    ref = bm.fit(BERNOULLI, rows, **kwargs)
    assert got.design.n == 56 and ref.design.n == 842
    for name in ("beta", "sd_u"):
        a = got.posterior[name].mean(("chain", "draw")).to_numpy()
        b = ref.posterior[name].mean(("chain", "draw")).to_numpy()
        sd = ref.posterior[name].std(("chain", "draw")).to_numpy()
        assert np.all(np.abs(a - b) < 0.25 * sd), (name, a, b, sd)
