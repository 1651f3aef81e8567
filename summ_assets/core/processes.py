"""Is the process that wrote something still running? (pid checks that survive pid reuse)"""

from __future__ import annotations


def alive_since(pid: int, started_by: float, slack_s: float = 1.0) -> bool:
    """A live (not zombie) process holds `pid` and it was started by `started_by` (+ `slack_s`), i.e.
    it is the process that did the work at `started_by`, not a later one that reused the number."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return proc.create_time() <= started_by + slack_s
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
