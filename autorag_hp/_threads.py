"""Small dense linear algebra on one BLAS thread.

The structured strategies update a posterior of a few hundred features per reward. On
matrices that small, OpenBLAS's thread pool costs far more than the arithmetic: on the
shipped default grid's space (113 features), 600 structured-tt ask/tell pairs on the 2-core
machine with other jobs running took 16 ms per tell with 2 BLAS threads and 0.4 ms under
this decorator. :func:`one_blas_thread` limits numpy's and
scipy's BLAS to one thread for the duration of a call and restores the previous setting;
torch, faiss and other libraries keep their own pools.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

__all__ = ["one_blas_thread"]

F = TypeVar("F", bound=Callable[..., Any])

_lock = threading.Lock()
_controllers: list[Any] | None = None
_depth = 0
_saved: list[int] = []


def _blas_controllers() -> list[Any]:
    global _controllers
    if _controllers is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional: without it BLAS keeps its default pool
            _controllers = []
        else:
            import scipy.linalg  # noqa: F401  (load scipy's BLAS so the controller sees it)

            _controllers = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    return _controllers


def one_blas_thread(fn: F) -> F:
    """Decorator: run ``fn`` with numpy's and scipy's BLAS limited to one thread (re-entrant)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _depth, _saved
        with _lock:
            if _depth == 0:
                libs = _blas_controllers()
                _saved = [c.num_threads for c in libs]
                for c, n in zip(libs, _saved):
                    if n != 1:
                        c.set_num_threads(1)
            _depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _depth -= 1
                if _depth == 0:
                    for c, n in zip(_blas_controllers(), _saved):
                        if n != 1:
                            c.set_num_threads(n)

    return wrapper  # type: ignore[return-value]
