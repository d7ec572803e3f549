"""PyTensor links the OpenBLAS of scipy-openblas32: no BLAS warning, BLAS ops work."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bayesmix import _blas

ROOT = Path(__file__).resolve().parents[1]

needs_wheel = pytest.mark.skipif(
    _blas.scipy_openblas_ldflags() is None, reason="scipy-openblas32 not installed here"
)

SCRIPT = """
import warnings
warnings.simplefilter("error")          # any warning, the BLAS one included, is an error
import bayesmix
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.tensor.blas import gemm_no_inplace, gemv_no_inplace
assert "scipy_openblas" in pytensor.config.blas__ldflags, pytensor.config.blas__ldflags
A, B, C = pt.dmatrices("A", "B", "C")
x, y = pt.dvectors("x", "y")
one = pt.constant(1.0, dtype="float64")
f = pytensor.function([A, B, C, x, y],
                      [gemm_no_inplace(C, one * 2, A, B, one), gemv_no_inplace(y, one, A, x, one)],
                      mode=Mode(linker="cvm", optimizer="fast_run"))  # the C linker
ops = {type(n.op).__name__ for n in f.maker.fgraph.toposort()}
assert "CGemv" in ops, ops                 # the C BLAS op, linked against the library
rng = np.random.default_rng(0)
a, b, c = rng.normal(size=(3, 5, 5))
v, w = rng.normal(size=(2, 5))
g, h = f(a, b, c, v, w)
assert np.allclose(g, c + 2 * a @ b) and np.allclose(h, w + a @ v)
print("ok", sorted(ops))
"""


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "PYTHONWARNINGS")}
    env["PYTENSORRC"] = str(tmp_path / "none.pytensorrc")  # no user configuration
    return env


@needs_wheel
def test_import_gives_no_blas_warning_and_blas_ops_link(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=_fresh_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "could not link to a BLAS" not in done.stderr
    assert "ok" in done.stdout


def test_user_configuration_is_left_alone(tmp_path):
    rc = tmp_path / "mine.pytensorrc"
    rc.write_text("[blas]\nldflags = -lmyblas\n")
    code = "import os, bayesmix; print(os.environ.get('PYTENSOR_FLAGS', ''))"
    env = _fresh_env(tmp_path) | {"PYTENSORRC": str(rc)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "blas__ldflags" not in done.stdout


def test_routine_list_covers_pytensors_blas_header():
    spec = importlib.util.find_spec("pytensor")
    assert spec is not None and spec.submodule_search_locations
    header = Path(spec.submodule_search_locations[0], "tensor", "blas", "c_code",
                  "blas_headers.py").read_text()
    start = header.index('header = """')
    block = header[start : header.index('"""', start + 12)]
    declared = set(re.findall(r"\b([a-z][a-z0-9_]*_)\s*\(", block))
    assert declared, "PyTensor's BLAS header moved; update bayesmix/_blas.py"
    assert declared <= set(_blas.BLAS_ROUTINES), declared - set(_blas.BLAS_ROUTINES)
