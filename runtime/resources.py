"""Process limits that would otherwise cap calls in flight by accident.

Every call in flight holds a socket, so an account allowed ``LLM_MAX_CONNECTIONS`` calls at
once needs that many file descriptors on top of what the process already uses. Many systems
start processes with a soft ``RLIMIT_NOFILE`` of 1,024 (and a much higher hard limit), which
would fail the 1,000th connection with ``OSError: Too many open files``.
:func:`ensure_open_files` is called by each provider engine with its pool size; it raises the
soft limit to fit every engine's pool so far, never above the hard limit.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("llm")

#: Descriptors kept for everything else (files, pipes, Ray's sockets).
RESERVE = 256
_raised_to = 0
_warned = False
_pools: dict[str, int] = {}


def ensure_open_files(connections: int, pool: str = "default") -> int:
    """Raise the soft open-files limit to fit every pool's sockets; returns the soft limit.

    ``pool`` names the pool (one per provider account) so that a pool made again is not
    counted twice. Does nothing where ``resource`` is missing (Windows) or the soft limit is
    already enough.
    """
    global _raised_to, _warned
    try:
        import resource
    except ImportError:  # pragma: no cover (Windows)
        return 0
    _pools[pool] = max(connections, 0)
    wanted = sum(_pools.values()) + RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted or _raised_to >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target <= soft:
        if _warned:
            return soft
        _warned = True
        logger.warning(
            "llm open-files limit %d (hard %d) is below %d: calls in flight may fail",
            soft,
            hard,
            wanted,
        )
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        logger.warning("llm could not raise the open-files limit: %s", error)
        return soft
    _raised_to = target
    return target
