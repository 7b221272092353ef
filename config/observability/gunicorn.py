"""The multiprocess directory's life under gunicorn (hooks named in config/gunicorn.conf.py).

* ``on_starting`` (the master, once): empty the directory, so counts of a previous run (and of
  workers whose pids are reused) never leak into this one;
* ``child_exit`` (the master, for every worker that ends, killed or not): drop its live gauges
  (pool, process figures); its counters stay, so totals neither reset nor double;
* ``on_exit``: remove the directory if it is the default one made for this master.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_PREFIX = "agent-platform-metrics-"
_made_default: list[Path] = []


def _remove_abandoned_defaults() -> None:
    """Default directories of masters that are gone without their on_exit (killed)."""
    for entry in Path(tempfile.gettempdir()).glob(f"{DEFAULT_PREFIX}*"):
        pid = entry.name.removeprefix(DEFAULT_PREFIX)
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:  # alive, another user's
            continue


def prepare_directory() -> Path:
    """PROMETHEUS_MULTIPROC_DIR, or a directory of this master's own under the temp directory
    (two servers on one machine must not share one). Set before the app is imported: the
    metric library picks its storage when first imported."""
    configured = os.environ.get(ENV)
    if configured:
        path = Path(configured)
    else:
        path = Path(tempfile.gettempdir()) / f"{DEFAULT_PREFIX}{os.getpid()}"
        os.environ[ENV] = str(path)
        _made_default.append(path)
        _remove_abandoned_defaults()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def on_starting(server: Any) -> None:
    path = Path(os.environ[ENV])
    for entry in path.glob("*.db"):
        entry.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    for path in _made_default:
        shutil.rmtree(path, ignore_errors=True)
