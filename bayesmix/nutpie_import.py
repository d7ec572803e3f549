"""Import nutpie without the plotting half of the ``arviz`` meta-package.

``nutpie.sample`` does ``import arviz`` at its top and then uses two functions of it,
``arviz.from_dict`` and ``arviz.dict_to_dataset``, both ``arviz_base``'s own (the meta-package
re-exports them).  Importing the meta-package also imports ``arviz_stats`` and
``arviz_plots`` with matplotlib: 2-2.5 s of every fit's 4 s of imports on this project's
machine (``python -X importtime -c "import nutpie"``).

:func:`import_nutpie` imports nutpie with a stand-in module named ``arviz`` that holds those two
functions, then takes the stand-in out of ``sys.modules`` again, so that a later ``import
arviz`` (by the user, or by bayesmix's plots) imports the real package.  When ``arviz`` is
already imported, nutpie simply gets it.  ``tests/test_nutpie_import.py`` checks that nutpie
uses no other name of ``arviz`` (nutpie is pinned to one minor version in ``pyproject.toml``).
"""

from __future__ import annotations

import sys
import types
from typing import Any

ARVIZ_NAMES = ("from_dict", "dict_to_dataset")
"""What ``nutpie.sample`` takes from ``arviz``."""


def import_nutpie() -> Any:
    """Return the ``nutpie`` module, imported without ``arviz_plots`` if not yet imported."""
    if "nutpie" in sys.modules or "arviz" in sys.modules:
        import nutpie

        return nutpie
    import arviz_base

    stand_in = types.ModuleType("arviz", "arviz_base's from_dict and dict_to_dataset, for nutpie")
    for name in ARVIZ_NAMES:
        setattr(stand_in, name, getattr(arviz_base, name))
    sys.modules["arviz"] = stand_in
    try:
        import nutpie
    finally:
        if sys.modules.get("arviz") is stand_in:
            del sys.modules["arviz"]
    return nutpie
