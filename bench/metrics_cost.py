"""What the Prometheus metrics cost GET sessions/{id}/: metrics on against off, interleaved.

    .venv/bin/python bench/metrics_cost.py [--rounds 3] [--duration 8] [--connections 16]
        [--baseline DIR]

Two gunicorns as in production (config/gunicorn.conf.py, 5 sync workers, the same database and
seed), one with METRICS_ENABLED=true (the default) and one with METRICS_ENABLED=false, and wrk
alternating on, off, on, off... so both see the same machine load (the idle one costs nothing).
``--baseline DIR`` adds a third server run from another checkout (e.g. ``git archive <commit>``
of the code before the metrics existed), to price what "off" still does (the pool and
authentication counters). Prints each run and the median req/s of each, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BASE, RESULTS, free_port, manage, resolve_database, seed, service_env, wrk


def start(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi"],
            env={**env, "PYTHONPATH": str(cwd)},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{env['PORT']}/health/live", timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not start; see {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout to run as a third server")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    database_url = resolve_database("agent_platform_bench_metrics")
    setup = service_env(database_url, free_port(), args.workers)
    manage(setup, "migrate", "--noinput", "-v", "0")
    data = seed(database_url, 10)
    variants: dict[str, tuple[dict[str, str], Path]] = {
        "metrics on": ({"METRICS_ENABLED": "true"}, BASE),
        "metrics off": ({"METRICS_ENABLED": "false"}, BASE),
    }
    if args.baseline is not None:
        variants["baseline"] = ({}, args.baseline.resolve())
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    rps: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name, (extra, cwd) in variants.items():
            port = free_port()
            # Small pools: three servers' workers share one PostgreSQL (a sync worker uses one).
            env = {
                **service_env(database_url, port, args.workers),
                "LOG_LEVEL": "warning",
                "DB_POOL_SIZE": "1",
                "DB_MAX_OVERFLOW": "2",
                **extra,
            }
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            log = RESULTS / f"gunicorn-metrics-cost-{name.replace(' ', '-')}.log"
            servers[name] = (start(env, cwd, log), f"http://127.0.0.1:{port}/api/v1/sessions/{data['paged']}/")
        for _, url in servers.values():
            wrk("warm", url, connections=args.connections, duration=2, key=str(data["key"]))
        names = list(servers)
        for n in range(args.rounds):
            # Each round starts with another variant: none always follows the same neighbour.
            for name in names[n % len(names) :] + names[: n % len(names)]:
                url = servers[name][1]
                result = wrk(name, url, connections=args.connections, duration=args.duration, key=str(data["key"]))
                rps[name].append(result.rps)
                print(
                    f"round {n} {name:12s} {result.rps:8.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                    flush=True,
                )
    finally:
        for process, _ in servers.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in servers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    medians = {name: statistics.median(values) for name, values in rps.items()}
    off = medians["metrics off"]
    for name, value in medians.items():
        print(f"median {name:12s} {value:8.0f} req/s  ({value / off:.3f} of metrics off)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "warning")
    sys.exit(main())
