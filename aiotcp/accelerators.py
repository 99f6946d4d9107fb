"""The optional accelerators, looked up in one place: httptools (llhttp) and uvloop.

Both are installed with aiotcp where wheels exist; everywhere else aiotcp runs on h11 and the stdlib asyncio
loop. httptools is imported when this module is, not on first use: a prober's first use may come when every
descriptor is taken, and an import opens files (EMFILE would surface from the import, not as a record).
uvloop is imported only when a loop is wanted (it costs start-up time).
"""

from __future__ import annotations

import functools
from types import ModuleType

try:
    import httptools
except ImportError:  # pragma: no cover - an optional accelerator, missing on some platforms
    httptools = None  # type: ignore[assignment]

__all__ = ["have_uvloop", "httptools", "uvloop"]


@functools.cache
def uvloop() -> ModuleType | None:
    """The uvloop module, or ``None`` where it is not installed."""
    try:
        import uvloop as module
    except ImportError:  # pragma: no cover - depends on the platform
        return None
    return module


def have_uvloop() -> bool:
    """Whether uvloop can run here (``anyio.run(..., backend_options={"use_uvloop": have_uvloop()})``)."""
    return uvloop() is not None
