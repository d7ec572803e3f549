"""Every equation of every model renders in a real LaTeX math renderer: KaTeX.

KaTeX (pinned below) is installed from the npm registry by a session fixture into pytest's
cache folder (``.pytest_cache/d/katex-<version>``, already git-ignored), so the README's two
setup commands are enough.  Without node/npm, or when the install fails, the test is skipped
locally and FAILS in CI (``CI=true``).  All equations go through one node process.

KaTeX runs with ``throwOnError`` and ``strict: "error"`` (unicode in math mode, unknown
commands and the like are errors), except ``unknownSymbol``: a non-Latin character inside
``\\text{}`` (a data variable named ``größe``), which LaTeX typesets as well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from render_support import (
    SEED_CROSS_LEVEL,
    SEED_RANDOM_SLOPE,
    dung_data,
    dung_spec,
    fake_fit,
    model_data,
    model_files,
    seed_dung_reml,
    seed_spec,
)

from bayesmix import Spec, build_design
from bayesmix.render import equations

KATEX_VERSION = "0.16.22"

_SCRIPT = r"""
// Render every {id, latex, display} of a JSON array on stdin with KaTeX; print [{id, error}].
const katex = require(process.argv[2]);
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const strict = (code) => (code === "unknownSymbol" ? "ignore" : "error");
  const out = [];
  for (const item of JSON.parse(input)) {
    try {
      katex.renderToString(item.latex, {
        displayMode: item.display, throwOnError: true, strict: strict, maxExpand: 100000,
      });
      out.push({ id: item.id, error: null });
    } catch (e) {
      out.push({ id: item.id, error: String((e && e.message) || e) });
    }
  }
  process.stdout.write(JSON.stringify(out));
});
"""


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"KaTeX is required in CI but unavailable: {why}")
    pytest.skip(f"KaTeX unavailable: {why}")


@pytest.fixture(scope="session")
def katex(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(node executable, katex module folder, checker script), installing KaTeX once."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are not on PATH")
    cache = getattr(request.config, "cache", None)
    folder = (
        Path(cache.mkdir(f"katex-{KATEX_VERSION}")) if cache is not None
        else tmp_path_factory.mktemp(f"katex-{KATEX_VERSION}")
    )
    module = folder / "node_modules" / "katex"
    if not (module / "package.json").exists():
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund",
                 "--loglevel=error", f"katex@{KATEX_VERSION}"],
                capture_output=True, text=True, timeout=300, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"npm install failed: {exc}")
        if done.returncode != 0 or not (module / "package.json").exists():
            _unavailable(f"npm install katex@{KATEX_VERSION} failed: {done.stderr[-2000:]}")
    version = json.loads((module / "package.json").read_text())["version"]
    assert version == KATEX_VERSION
    script = folder / "check.js"
    script.write_text(_SCRIPT)
    return node, module, script


def _render_all(katex, items: list[dict]) -> list[dict]:
    node, module, script = katex
    done = subprocess.run(
        [node, str(script), str(module)], input=json.dumps(items), capture_output=True,
        text=True, timeout=600, check=True,
    )
    return json.loads(done.stdout)


def _items(name: str, eq) -> list[dict]:
    """Every LaTeX string an Equations object produces, and the math of its Markdown."""
    out = []
    for form in eq.forms:
        out.append({"id": f"{name}/{form.name}/latex", "latex": form.latex, "display": True})
        for k, block in enumerate(re.findall(r"\$\$\n(.*?)\n\$\$", form.markdown, re.S)):
            out.append({"id": f"{name}/{form.name}/md{k}", "latex": block, "display": True})
        inline = re.sub(r"\$\$\n.*?\n\$\$", "", form.markdown, flags=re.S)
        for k, math in enumerate(re.findall(r"(?<!\\)\$(.+?)(?<!\\)\$", inline)):
            out.append({"id": f"{name}/{form.name}/inline{k}", "latex": math, "display": False})
    repr_latex = eq._repr_latex_().strip().removeprefix("$$").removesuffix("$$")
    out.append({"id": f"{name}/_repr_latex_", "latex": repr_latex, "display": True})
    return out


def _cases() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for path in model_files():
        spec = Spec.from_file(path)
        cases.append((f"{path.stem}/symbols", equations(spec)))
        data = model_data(spec)
        if data is not None:
            cases.append((f"{path.stem}/data", equations(spec, data)))
            cases.append((f"{path.stem}/data-long", equations(spec, data, max_rows=60)))
            design = build_design(spec, data)
            cases.append((f"{path.stem}/fit", equations(spec, fit=fake_fit(design))))
    for name, text in (("seed1", SEED_RANDOM_SLOPE), ("seed3", SEED_CROSS_LEVEL)):
        cases.append((name, equations(seed_spec(text))))
        cases.append((f"{name}/coef", equations(seed_spec(text), grouping="coefficient")))
    cases.append(("dung/reml", equations(dung_spec(), reml=seed_dung_reml())))
    cases.append(("dung/data", equations(dung_spec(), dung_data())))
    # names that need escaping, a categorical level-1 predictor, a slope without U
    rng = np.random.default_rng(0)
    odd = pd.DataFrame({
        "g#1": np.repeat(["a b", "c&d", "e_f", "100%"], 6),
        "score%": rng.normal(size=24),
        "x_1": rng.normal(size=24),
        "a&b": rng.choice(["lo w", "hi~", "mid^"], size=24),
        "größe": np.repeat(rng.normal(size=4), 6),
        "$cost": np.repeat(rng.normal(size=4), 6),
    })
    spec = Spec.from_equations(
        "`score%` = b0 + b1*x_1 + b2*`a&b` + e\n"
        "b0 = g00 + g01*`größe` + g02*`$cost` + U0\nb1 = g10 + g11*`größe` + U1\nb2 = g20",
        cluster="g#1",
    )
    # transformed and centred variables, and a residual SD per group
    sleep = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "sleepstudy.csv")
    sleep["phase"] = np.where(sleep["Days"] < 5, "early", "late")
    sleep["z"] = rng.normal(size=len(sleep))
    sleep["w"] = np.exp(rng.normal(size=len(sleep)))
    tspec = Spec.from_formula(
        "log(Reaction) ~ poly(Days, 2) + I(z^2 / 2) + scale(w, scale = FALSE) "
        "+ log1p(w) + sqrt(w) + C(phase, Treatment(\"late\")) + (1 + group(Days) | Subject)"
    ).with_options(sigma_by="phase")
    cases.append(("transforms/symbols", equations(tspec)))
    cases.append(("transforms/data", equations(tspec, sleep, max_rows=6)))
    cases.append(("odd/symbols", equations(spec)))
    cases.append(("odd/data", equations(spec, odd, max_rows=8)))
    cases.append(("odd/fit", equations(spec, fit=fake_fit(build_design(spec, odd)))))
    return cases


def test_every_equation_renders_in_katex(katex):
    items = [item for name, eq in _cases() for item in _items(name, eq)]
    assert len(items) > 50
    results = _render_all(katex, items)
    assert len(results) == len(items)
    failures = {r["id"]: r["error"] for r in results if r["error"] is not None}
    assert not failures, json.dumps(failures, indent=1, ensure_ascii=False)[:5000]


def test_katex_rejects_broken_latex(katex):
    """The harness really renders: an undefined command and an unbalanced brace fail."""
    results = _render_all(katex, [
        {"id": "undefined", "latex": r"\notacommand{x}", "display": True},
        {"id": "brace", "latex": r"\begin{bmatrix} 1 & 2", "display": True},
        {"id": "unicode-in-math", "latex": "日_{0j}", "display": True},
        {"id": "fine", "latex": r"\beta_{0j}", "display": True},
    ])
    errors = {r["id"]: r["error"] for r in results}
    assert errors["undefined"] and errors["brace"] and errors["unicode-in-math"]
    assert errors["fine"] is None
