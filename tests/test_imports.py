"""``import bayesmix`` is lazy: a spec, a design, a REML fit and equations need no PyMC.

Each check runs in a fresh interpreter, since this test session has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bayesmix

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import json, sys
import pandas as pd
import bayesmix as bm
data = pd.read_csv("data/dung.csv")
spec = bm.Spec.from_formula("pr_dung ~ flies + (1 | oven_block)")
bm.build_design(spec, data)
bm.fit_reml(spec, data)
bm.equations(spec, data).matrix
from bayesmix.cli import main
main(["equations", "models/dung.toml"])
print(json.dumps({m: m in sys.modules for m in ("pymc", "pytensor", "arviz", "arviz_base",
                                                 "nutpie", "matplotlib", "dask", "duckdb")}))
"""


def test_spec_design_reml_and_equations_do_not_import_pymc():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not any(loaded.values()), loaded


def test_every_public_name_resolves():
    for name in bayesmix.__all__:
        assert getattr(bayesmix, name) is not None, name
    assert set(bayesmix.__all__) <= set(dir(bayesmix))
    assert bayesmix.stats.__name__ == "bayesmix.stats"  # submodules on attribute access too


def test_unknown_name_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        bayesmix.fitt  # noqa: B018


def test_functions_named_like_their_submodule_stay_functions():
    """Importing the module ``bayesmix.kfold`` must not rebind the function ``bm.kfold``."""
    script = ("import bayesmix.kfold, bayesmix.variance, bayesmix.predict, bayesmix.compare\n"
              "import bayesmix as bm\n"
              "print(all(callable(f) for f in (bm.kfold, bm.variance, bm.predict, bm.compare)))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "True"
