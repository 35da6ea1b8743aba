"""Small helpers shared by several test files."""
from __future__ import annotations

import os
import time


def wait_for_checkpoints(state, proc, count, timeout=300):
    """Poll until `count` checkpoints were written to `state` (each atomic write is a new file),
    or `proc` ended, or the timeout passed."""
    seen, deadline = set(), time.time() + timeout
    while len(seen) < count and time.time() < deadline and proc.poll() is None:
        try:
            st = os.stat(state)
            seen.add((st.st_ino, st.st_mtime_ns))
        except FileNotFoundError:
            pass
        time.sleep(0.002)
