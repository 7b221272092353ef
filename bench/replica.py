"""The read-replica benchmark (part of `make bench`; runnable alone: `.venv/bin/python bench/replica.py`).

A private primary and a hot standby (``pg_basebackup -R``, the tests' ``StreamingPair``) on
loopback ports, migrated and seeded; then, with wrk on 127.0.0.1:

1. Reads: the list endpoints (sessions list, a message page) on gunicorn without replicas, then
   with ``DATABASE_REPLICA_URLS`` naming the standby. For each run: req/s, latency, and the load
   each server carried: CPU seconds of its postgres processes and transactions committed.
2. Writes: message appends on one hot session, then spread over many sessions, then session
   creates (each writes an audit row), with the standby's replication lag sampled every 0.2 s
   (``config.db.replicas.ReplicaMonitor``, as the service measures it).

Writes bench/results/replica-<stamp>.md. Figures depend on the machine: this one is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parent.parent
RESULTS = BASE / "bench" / "results"
WRK_POST = BASE / "bench" / "wrk" / "post_messages.lua"
WRK_CREATE = BASE / "bench" / "wrk" / "post_sessions.lua"
sys.path.insert(0, str(BASE))

_SEED = """
import django, json
django.setup()
from accounts.services import user_create
from apikeys.services import api_key_create
from agent_sessions.services import session_append_message, session_create
user = user_create(actor=None, email="replica-bench@example.com", name="Bench", roles=["user"])
key, raw = api_key_create(actor=None, owner=user, name="bench", scopes=("read", "write"), rate_limit_tier="enterprise")
sessions = [session_create(actor=None, owner=user, agent_id=f"agent-{n % 5}", title=f"s{n}") for n in range(60)]
for n in range(100):
    session_append_message(session_id=sessions[0].pk, owner_id=user.pk, role="user", content=f"message {n}")
print(json.dumps({"raw_key": raw, "sessions": [str(s.pk) for s in sessions]}))
"""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable latency {text!r}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[match.group(2)]


def wrk(
    url: str, *, connections: int, duration: int, key: str, script: Path | None = None, **env: str
) -> dict[str, Any]:
    cmd = ["wrk", f"-t{min(connections, os.cpu_count() or 1)}", f"-c{connections}", f"-d{duration}s", "--latency"]
    cmd += ["-s", str(script)] if script else ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, env={**os.environ, **env}, check=True, timeout=duration + 60
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


class ServerLoad:
    """CPU seconds of one PostgreSQL's processes and its committed transactions, between two reads."""

    def __init__(self, server: Any, dbname: str) -> None:
        self.server, self.dbname = server, dbname

    def _read(self) -> tuple[float, int]:
        import psutil

        cpu = 0.0
        for process in psutil.process_iter(["cmdline", "cpu_times"]):
            try:
                cmdline = " ".join(process.info["cmdline"] or [])
                parent = process.parent()
                parent_cmd = " ".join(parent.cmdline()) if parent else ""
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if str(self.server.data) in cmdline or str(self.server.data) in parent_cmd:
                times = process.info["cpu_times"]
                cpu += times.user + times.system
        with self.server.connect(self.dbname, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
        return cpu, int(row[0]) if row else 0

    def __enter__(self) -> ServerLoad:
        self.start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.cpu_seconds = round(end[0] - self.start[0], 2)
        self.transactions = end[1] - self.start[1]


class LagSampler:
    """The standby's lag as the service measures it, every 0.2 s, while writes run."""

    def __init__(self, pair: Any) -> None:
        from config.db.replicas import ReplicaMonitor

        def params(server: Any) -> dict[str, Any]:
            return {**server.conninfo(pair.database), "connect_timeout": 2}

        self.monitor = ReplicaMonitor(
            primary=params(pair.primary), replicas={"replica_0": params(pair.standby)}, max_lag=2
        )
        self.lags: list[float] = []
        self.bytes: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.monitor.check_once()
            state = self.monitor.states["replica_0"]
            if state.lag_seconds is not None:
                self.lags.append(state.lag_seconds)
            if state.bytes_behind is not None:
                self.bytes.append(state.bytes_behind)
            time.sleep(0.2)

    def __enter__(self) -> LagSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.monitor.stop()

    def figures(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        return {
            "lag_max_s": round(lags[-1], 3),
            "lag_p50_s": round(lags[len(lags) // 2], 3),
            "bytes_behind_max": max(self.bytes, default=0),
        }


def run(duration: int, workers: int, connections: int) -> str:
    from tests.reliability.servers import Gunicorn, StreamingPair, manage, service_env

    pair = StreamingPair()
    rows: list[str] = []
    try:
        manage("migrate", "--no-input", env=service_env(pair.primary_url))
        base_env = service_env(pair.primary_url, DB_POOL_SIZE="1", DB_MAX_OVERFLOW="2", LOG_LEVEL="warning")
        seeded = subprocess.run(
            [sys.executable, "-c", _SEED], env=base_env, cwd=BASE, capture_output=True, text=True, check=True
        )
        data = json.loads(seeded.stdout.strip().splitlines()[-1])
        pair.start_standby()
        key, sessions = data["raw_key"], data["sessions"]
        reads = {
            "GET /sessions/ (list)": "/api/v1/sessions/",
            "GET /sessions/<id>/messages/ (page)": f"/api/v1/sessions/{sessions[0]}/messages/",
        }
        assert pair.standby is not None
        for label, env in [
            ("primary only", base_env),
            ("one replica", {**base_env, "DATABASE_REPLICA_URLS": pair.standby_url}),
        ]:
            server = Gunicorn(env, workers=workers)
            server.start()
            try:
                for name, path in reads.items():
                    wrk(f"{server.url}{path}", connections=connections, duration=1, key=key)  # warm every worker
                    with (
                        ServerLoad(pair.primary, pair.database) as primary,
                        ServerLoad(pair.standby, pair.database) as standby,
                    ):
                        result = wrk(f"{server.url}{path}", connections=connections, duration=duration, key=key)
                    rows.append(
                        f"| {name} | {label} | {result['rps']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
                        f"| {result['errors']} | {primary.cpu_seconds} s, {primary.transactions} xacts "
                        f"| {standby.cpu_seconds} s, {standby.transactions} xacts |"
                    )
            finally:
                server.stop()

        write_rows: list[str] = []
        server = Gunicorn(base_env, workers=workers)
        server.start()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                runs = [
                    ("append, one hot session", WRK_POST, sessions[:1]),
                    (f"append, {len(sessions)} sessions", WRK_POST, sessions),
                    ("create session (+1 audit row)", WRK_CREATE, sessions),
                ]
                for label, script, ids in runs:
                    ids_file = Path(tmp) / "ids.txt"
                    ids_file.write_text("\n".join(ids) + "\n")
                    with LagSampler(pair) as lag:
                        result = wrk(
                            f"{server.url}/",
                            connections=connections,
                            duration=duration,
                            key=key,
                            script=script,
                            BENCH_SESSION_IDS=str(ids_file),
                            BENCH_KEY=key,
                        )
                    figures = lag.figures()
                    write_rows.append(
                        f"| {label} | {result['rps']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
                        f"| {result['errors']} | {figures['lag_p50_s']} | {figures['lag_max_s']} "
                        f"| {figures['bytes_behind_max']} |"
                    )
        finally:
            server.stop()
    finally:
        pair.destroy()

    return "\n".join(
        [
            f"## Read replica ({workers} gunicorn sync workers, wrk -c{connections}, {duration}s per run, "
            f"{'Redis' if os.environ.get('REDIS_URL') else 'the database cache'} as the shared cache)",
            "",
            "Reads: each list endpoint without replicas, then with one streaming standby "
            "(DATABASE_REPLICA_URLS). Server load: CPU seconds of that PostgreSQL's processes and "
            "transactions committed during the run.",
            "",
            "| endpoint | setup | req/s | p50 ms | p99 ms | errors | primary load | standby load |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Writes (no replica reads): message appends on one session, then spread over many, then "
            "session creates (one audit_logs row each); the standby's lag sampled every 0.2 s as the "
            "service measures it.",
            "",
            "| run | req/s | p50 ms | p99 ms | errors | lag p50 s | lag max s | max bytes behind |",
            "|---|---|---|---|---|---|---|---|",
            *write_rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_DURATION", "5")))
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)  # gunicorn.conf.py's default
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (Debian's package)", file=sys.stderr)
        return 2
    report = run(args.duration, args.workers, args.connections)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"replica-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.md"
    out.write_text(report + "\n")
    print("\n" + report + f"\n\nwritten to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
