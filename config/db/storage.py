"""Where each thread's database connections live.

Django keeps them in an asgiref ``Local(thread_critical=True)``: in a thread with no running event
loop that is a plain ``threading.local``, reached on every access by calling
``asyncio.get_running_loop()``, which outside a loop raises an exception that asgiref then
catches. Every ``connections[alias]``, every attribute of ``django.db.connection`` and both
``close_old_connections`` calls of a request pass there, each with an exception raised and caught
(bench/README.md, "Sixth round": the project hello 508 k -> 475 k instructions, the detail GET
1,738 k -> 1,710 k, an append 2,460 k -> 2,377 k).

This service runs its requests, its commands and its tests' database work in sync threads (WSGI
workers; no ASGI entry point), where asgiref's storage *is* a ``threading.local``: the same
storage, reached directly, is the same thing without the exceptions. What asgiref adds is a
separate storage per asyncio task in a thread running an event loop, and there Django refuses
database work anyway (``async_unsafe``: ``SynchronousOnlyOperation``) unless
``DJANGO_ALLOW_ASYNC_UNSAFE`` is set; with that set, Django's own storage is kept.
tests/config/test_connection_storage.py pins that each thread still has its own connections.
"""

from __future__ import annotations

import os
import threading

from django.db import connections


def use_thread_local_connections() -> None:
    """Give ``django.db.connections`` a plain ``threading.local`` for its per-thread storage,
    carrying over what this thread already holds. At start-up, before any request or query."""
    storage = connections._connections  # type: ignore[attr-defined]  # Django's, made in BaseConnectionHandler.__init__
    if isinstance(storage, threading.local) or os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
        return
    plain = threading.local()
    for alias in connections.settings:
        if hasattr(storage, alias):
            setattr(plain, alias, getattr(storage, alias))
    connections._connections = plain  # type: ignore[attr-defined]
