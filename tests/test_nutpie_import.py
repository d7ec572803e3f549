"""nutpie imported without the arviz meta-package (bayesmix.nutpie_import)."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

from bayesmix.nutpie_import import ARVIZ_NAMES

ROOT = Path(__file__).resolve().parents[1]


def test_nutpie_uses_only_the_names_the_stand_in_holds():
    import nutpie.sample  # noqa: F401

    used = set(re.findall(r"\barviz\.(\w+)", inspect.getsource(sys.modules["nutpie.sample"])))
    assert used <= set(ARVIZ_NAMES), f"nutpie.sample now uses arviz.{used - set(ARVIZ_NAMES)}"


SCRIPT = """
import json, sys
from bayesmix.nutpie_import import import_nutpie
nutpie = import_nutpie()
before = {m: m in sys.modules for m in ("arviz", "arviz_plots", "matplotlib")}
import arviz
print(json.dumps({"before": before, "real": hasattr(arviz, "plot_forest"),
                  "nutpie_from_dict":
                      sys.modules["nutpie.sample"].arviz.from_dict is arviz.from_dict}))
"""


def test_import_leaves_no_stand_in_behind():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert not any(result["before"].values()), result
    assert result["real"] and result["nutpie_from_dict"]
