"""Point PyTensor's C code at the OpenBLAS of the ``scipy-openblas32`` wheel.

Installed with pip, PyTensor finds no BLAS to link its C code against and greets every user
with a five-line ``could not link to a BLAS installation`` warning (and falls back to slower
code).  ``scipy-openblas32`` (a dependency of bayesmix on Linux and macOS) ships a
self-contained OpenBLAS whose symbols carry a ``scipy_`` prefix (``scipy_dgemm_``), so the
flags set here link that library and rename, by preprocessor macros, the Fortran BLAS
routines PyTensor's C code declares (``dgemm_`` -> ``scipy_dgemm_``).

This runs when ``bayesmix`` is imported, before PyTensor is, and only sets
``PYTENSOR_FLAGS=blas__ldflags=...`` when nobody has configured a BLAS for PyTensor yet
(``blas__ldflags`` in ``PYTENSOR_FLAGS`` or ``ldflags`` in a ``.pytensorrc``).  Set
``BAYESMIX_BLAS=0`` to leave PyTensor's own search alone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The Fortran BLAS routines declared by PyTensor's C header (pytensor/tensor/blas/c_code/
# blas_headers.py; tests/test_reprs.py checks that this list covers it).
BLAS_ROUTINES = tuple(
    """
    caxpy_ ccopy_ cdotc_sub_ cdotu_sub_ cgbmv_ cgemm_ cgemv_ cgerc_ cgeru_ chbmv_ chemm_ chemv_
    cher2_ cher2k_ cher_ cherk_ chpmv_ chpr2_ chpr_ cscal_ csscal_ cswap_ csymm_ csyr2k_ csyrk_
    ctbmv_ ctbsv_ ctpmv_ ctpsv_ ctrmm_ ctrmv_ ctrsm_ ctrsv_ dasum_sub_ daxpy_ dcopy_ ddot_
    ddot_sub_ dgbmv_ dgemm_ dgemv_ dger_ dnrm2_sub_ drot_ drotg_ drotm_ drotmg_ dsbmv_ dscal_
    dsdot_sub_ dspmv_ dspr2_ dspr_ dswap_ dsymm_ dsymv_ dsyr2_ dsyr2k_ dsyr_ dsyrk_ dtbmv_ dtbsv_
    dtpmv_ dtpsv_ dtrmm_ dtrmv_ dtrsm_ dtrsv_ dzasum_sub_ dznrm2_sub_ icamax_sub_ idamax_sub_
    isamax_sub_ izamax_sub_ sasum_sub_ saxpy_ scasum_sub_ scnrm2_sub_ scopy_ sdot_ sdot_sub_
    sdsdot_sub_ sgbmv_ sgemm_ sgemv_ sger_ snrm2_sub_ srot_ srotg_ srotm_ srotmg_ ssbmv_ sscal_
    sspmv_ sspr2_ sspr_ sswap_ ssymm_ ssymv_ ssyr2_ ssyr2k_ ssyr_ ssyrk_ stbmv_ stbsv_ stpmv_
    stpsv_ strmm_ strmv_ strsm_ strsv_ xerbla_ zaxpy_ zcopy_ zdotc_sub_ zdotu_sub_ zdscal_ zgbmv_
    zgemm_ zgemv_ zgerc_ zgeru_ zhbmv_ zhemm_ zhemv_ zher2_ zher2k_ zher_ zherk_ zhpmv_ zhpr2_
    zhpr_ zscal_ zswap_ zsymm_ zsyr2k_ zsyrk_ ztbmv_ ztbsv_ ztpmv_ ztpsv_ ztrmm_ ztrmv_ ztrsm_
    ztrsv_
    """.split()
)
SYMBOL_PREFIX = "scipy_"


def scipy_openblas_ldflags() -> str | None:
    """``blas__ldflags`` that link ``scipy-openblas32`` (None when it is not installed).

    Returns
    -------
    str or None
        ``-L<dir> -l<lib> -Wl,-rpath,<dir> -Dddot_=scipy_ddot_ ...``.
    """
    if sys.platform not in ("linux", "darwin"):
        return None
    try:
        import scipy_openblas32 as sob
    except ImportError:
        return None
    lib_dir = sob.get_lib_dir()
    if " " in lib_dir or "," in lib_dir or '"' in lib_dir:
        return None  # would need quoting that PyTensor's flag parser does not undo
    renames = " ".join(f"-D{name}={SYMBOL_PREFIX}{name}" for name in BLAS_ROUTINES)
    return f"-L{lib_dir} -l{sob.get_library()} -Wl,-rpath,{lib_dir} {renames}"


def _user_configured() -> bool:
    """Whether the user has set PyTensor's BLAS flags (environment or a .pytensorrc)."""
    if "blas__ldflags" in os.environ.get("PYTENSOR_FLAGS", ""):
        return True
    rc = os.environ.get("PYTENSORRC")
    files = rc.split(os.pathsep) if rc else [str(Path.home() / ".pytensorrc")]
    for name in files:
        try:
            text = Path(name).expanduser().read_text(errors="replace")
        except OSError:
            continue
        if "ldflags" in text:
            return True
    return False


def configure_blas() -> bool:
    """Set PyTensor's BLAS flags to ``scipy-openblas32`` unless configured already.

    Returns
    -------
    bool
        True when the flags were set here.
    """
    if os.environ.get("BAYESMIX_BLAS", "1") == "0" or "pytensor" in sys.modules:
        return False
    if _user_configured():
        return False
    flags = scipy_openblas_ldflags()
    if flags is None:
        return False
    current = os.environ.get("PYTENSOR_FLAGS", "").strip().strip(",")
    setting = f'blas__ldflags="{flags}"'
    os.environ["PYTENSOR_FLAGS"] = f"{current},{setting}" if current else setting
    return True


configure_blas()
