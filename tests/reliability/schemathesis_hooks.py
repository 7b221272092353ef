"""Schemathesis hooks for test_schemathesis.py, loaded by `st run` through SCHEMATHESIS_HOOKS.

A fuzzer holding an admin key soon revokes that key, rotates it, deactivates its own user or
takes away its own admin role: the API allows all of these. Every request after that is a 401
(or a 403), and the rest of the run tests nothing. So the run gets a pool of keys
(REL_ST_POOL, a JSON file written by the test): requests carry the current key, and when one
comes back 401/403 the key is probed; a dead key is replaced by the next live one. The
number of keys used and of responses seen is written back (REL_ST_STATS) so the test can tell
the hooks ran and the pool held out.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import schemathesis

_POOL = json.loads(Path(os.environ["REL_ST_POOL"]).read_text())
_STATS = Path(os.environ["REL_ST_STATS"])
_lock = threading.Lock()
_state = {"index": 0, "switches": 0, "exhausted": False, "responses_seen": 0}


def _current() -> str:
    return _POOL["keys"][_state["index"]]


def _works(key: str) -> bool:
    """The key authenticates and still has the powers the run is meant to test with."""
    request = urllib.request.Request(
        _POOL["base_url"] + _POOL["probe_path"], headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False


def _save() -> None:
    _STATS.write_text(json.dumps({**_state, "pool_size": len(_POOL["keys"])}))


_save()
atexit.register(_save)


@schemathesis.auth(refresh_interval=None, retry_on=[])
class KeyPool:
    def get(self, case: Any, context: Any) -> str:
        with _lock:
            return _current()

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    with _lock:
        _state["responses_seen"] += 1
    if response.status_code not in (401, 403):
        return
    sent = response.request.headers.get("Authorization", "")
    with _lock:
        if sent != f"Bearer {_current()}" or _works(_current()):
            return  # a request without our key, or a refusal the key earned fairly
        while _state["index"] + 1 < len(_POOL["keys"]):
            _state["index"] += 1
            _state["switches"] += 1
            if _works(_current()):
                break
        else:
            _state["exhausted"] = True
        _save()
