"""Crash points for the crash tests: `CLOUDWALLET_FAILPOINT=<name>` kills the process with
SIGKILL the Nth time (`CLOUDWALLET_FAILPOINT_HITS`, default 1) it passes that point.

Points: `before_db_commit` (mid-batch: ledger written, not committed), `after_db_commit`
(committed, results not published), `after_publish` (published, Kafka offsets not committed).
Unset (always, in production), a failpoint is one string comparison.
"""

from __future__ import annotations

import os
import signal

FAILPOINTS = ("before_db_commit", "after_db_commit", "after_publish")

_armed = os.environ.get("CLOUDWALLET_FAILPOINT") or None
_hits_left = int(os.environ.get("CLOUDWALLET_FAILPOINT_HITS", "1"))
if _armed is not None and _armed not in FAILPOINTS:
    raise RuntimeError(f"CLOUDWALLET_FAILPOINT={_armed!r} is not one of {', '.join(FAILPOINTS)}")


def failpoint(name: str) -> None:
    global _hits_left
    if name != _armed:
        return
    _hits_left -= 1
    if _hits_left <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
