"""The notebooks in notebooks/: generated from build_notebooks.py, committed with outputs, and
re-executed from a clean kernel of this environment (slow; CI runs it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = [
    "01_dung_mixed_model_maths",
    "02_level_equations_to_mixed_form",
    "03_hsb_cross_level",
    "04_sleepstudy_correlated_slopes",
    "05_three_levels_and_crossed",
    "06_logistic_and_poisson",
    "07_centring_transformations_weights",
]
CELL_TIMEOUT = 900  # seconds per cell; a cold PyTensor compile cache makes the first fits slow


def _generator():
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", NOTEBOOKS_DIR / "build_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_all_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    readme = (NOTEBOOKS_DIR / "README.md").read_text()
    for name in EXPECTED:
        assert f"{name}.ipynb" in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_matches_generator_and_has_outputs(path):
    """The .ipynb holds the generator's cells, executed in order without errors."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    built = _generator().build(path.stem)
    assert [c.source for c in nb.cells] == [c.source for c in built.cells], (
        f"{path.name} differs from notebooks/build_notebooks.py; run "
        "`python notebooks/build_notebooks.py --execute`"
    )
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code_cells]
    assert counts == list(range(1, len(code_cells) + 1)), f"{path.name} is not fully executed"
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error output"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path):
    """Run the notebook top to bottom in a fresh ``python3`` kernel; any error fails."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    probe = nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")
    probe["id"] = "kernel-probe"
    nb.cells.insert(0, probe)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    try:
        client.execute()
    finally:
        # The kernel must be this environment's Python (the venv with bayesmix installed),
        # not some other "python3" kernel registered on the machine.
        printed = "".join(o.get("text", "") for o in nb.cells[0].get("outputs", [])).strip()
        assert printed, "the kernel probe printed nothing"
        assert Path(printed).resolve() == Path(sys.prefix).resolve(), (
            f"the python3 kernel runs {printed}, not this environment ({sys.prefix})"
        )
