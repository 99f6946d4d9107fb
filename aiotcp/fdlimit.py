"""The open-file limit: raised toward the hard limit so that a wanted concurrency fits, or clamped with a warning.

Used by the command line and by Dask workers (which fit ``-c`` to their own limit); standard library only.
"""

from __future__ import annotations

__all__ = ["FD_RESERVE", "raise_fd_limit"]

# Descriptors kept free for everything that is not a probe socket (stdio, output, journal, the loop's own).
FD_RESERVE = 64


def raise_fd_limit(wanted: int) -> tuple[int, str | None]:
    """Raise the soft RLIMIT_NOFILE toward the hard limit; return the concurrency that fits and a warning
    when ``wanted`` had to be clamped."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return wanted, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted + FD_RESERVE)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    fits = max(1, soft - FD_RESERVE)
    if wanted > fits:
        return fits, f"concurrency {wanted} does not fit the open-file limit {soft}; using {fits}"
    return wanted, None
