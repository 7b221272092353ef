"""What the Prometheus metrics cost one GET sessions/{id}/, in process: time and instructions.

    .venv/bin/python bench/metrics_cost_inprocess.py [--requests 2000] [--callgrind] [--baseline DIR]

Each variant (METRICS_ENABLED=true, =false, and optionally a server tree from another checkout)
runs in its own process: the real WSGI application (full middleware stack, the pool,
PostgreSQL over its socket), multiprocess metric files as under gunicorn, the same request
``--requests`` times after a warm-up, alternating variants over ``--rounds``. Reported: the
median mean time per request; with ``--callgrind``, instructions per request counted by
valgrind (a run of N requests minus a run of N/2, halved: startup cancels out), which a loaded
machine cannot disturb. Under valgrind the metrics' once-a-second sampler thread (pool and
process gauges) is slowed to once an hour: wall-clock work would otherwise be charged to each
of the hundred-times-slower requests; so is the API key reuse window, for the same reason.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import BASE, RESULTS, free_port, manage, resolve_database, seed, service_env

CHILD = """
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
if os.environ.get("BENCH_SAMPLE_SECONDS"):
    # Under valgrind a request takes a hundred times longer, and the once-a-second sampler
    # would run a hundred times more often per request than it does for real.
    from config.observability import metrics
    metrics.SAMPLE_SECONDS = float(os.environ["BENCH_SAMPLE_SECONDS"])
if os.environ.get("BENCH_KEY_REUSE_SECONDS"):
    # The same for the key reuse window: with it, how often a key is fetched depends on speed.
    import apikeys.authentication
    apikeys.authentication.KEY_REUSE_SECONDS = float(os.environ["BENCH_KEY_REUSE_SECONDS"])
from bench.profile import wsgi_caller
from config.wsgi import application
call = wsgi_caller(application, "GET", {path!r}, {key!r})
for _ in range(200):
    assert call() == 200
n = int(sys.argv[1])
started, cpu = time.perf_counter(), time.process_time()
for _ in range(n):
    call()
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
print(json.dumps({{"us": wall / n * 1e6, "cpu_us": cpu / n * 1e6}}))
"""


def run_child(env: dict[str, str], cwd: Path, code: str, requests: int, *, callgrind: bool = False) -> dict[str, float]:
    cmd = [sys.executable, "-c", code, str(requests)]
    out_file = None
    if callgrind:
        env = {**env, "BENCH_KEY_REUSE_SECONDS": "3600"}
        if "METRICS_ENABLED" in env:
            env["BENCH_SAMPLE_SECONDS"] = "3600"
        out_file = tempfile.mktemp(prefix="callgrind-", dir=RESULTS)
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *cmd]
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    if out_file is not None:
        text = Path(out_file).read_text()
        figures["instructions"] = float(re.search(r"^summary:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
        Path(out_file).unlink()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--callgrind-requests", type=int, default=200)
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    database_url = resolve_database("agent_platform_bench_metrics_inprocess")
    env = {
        **service_env(database_url, free_port(), 1),
        "LOG_LEVEL": "warning",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    data = seed(database_url, 10)
    code = CHILD.format(path=f"/api/v1/sessions/{data['paged']}/", key=str(data["key"]))
    variants = {"metrics on": ({"METRICS_ENABLED": "true"}, BASE), "metrics off": ({"METRICS_ENABLED": "false"}, BASE)}
    if args.baseline is not None:
        variants["baseline"] = ({}, args.baseline.resolve())
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    instructions: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="metrics-cost-") as multiproc:
        for n in range(args.rounds):
            for name, (extra, cwd) in variants.items():
                child_env = {
                    **env,
                    **extra,
                    "PROMETHEUS_MULTIPROC_DIR": multiproc,
                    "PYTHONPATH": str(cwd),
                    "PYTHONHASHSEED": "0",
                }
                figures = run_child(child_env, cwd, code, args.requests)
                times[name].append(figures["us"])
                cpu[name].append(figures["cpu_us"])
                print(
                    f"round {n} {name:12s} {figures['us']:8.1f} us/request, {figures['cpu_us']:8.1f} us CPU in the"
                    " worker",
                    flush=True,
                )
        if args.callgrind:
            for name, (extra, cwd) in variants.items():
                child_env = {
                    **env,
                    **extra,
                    "PROMETHEUS_MULTIPROC_DIR": multiproc,
                    "PYTHONPATH": str(cwd),
                    "PYTHONHASHSEED": "0",
                }
                full = run_child(child_env, cwd, code, args.callgrind_requests, callgrind=True)["instructions"]
                half = run_child(child_env, cwd, code, args.callgrind_requests // 2, callgrind=True)["instructions"]
                instructions[name] = (full - half) / (args.callgrind_requests - args.callgrind_requests // 2)
                print(f"callgrind {name:12s} {instructions[name]:12.0f} instructions/request", flush=True)
    off, off_cpu = statistics.median(times["metrics off"]), statistics.median(cpu["metrics off"])
    for name, values in times.items():
        wall, worker = statistics.median(values), statistics.median(cpu[name])
        print(
            f"median {name:12s} {wall:8.1f} us/request ({wall / off:.3f} of off), "
            f"{worker:8.1f} us CPU in the worker ({worker / off_cpu:.3f} of off)"
        )
    for name, value in instructions.items():
        print(f"instructions {name:12s} {value:12.0f} per request ({value / instructions['metrics off']:.3f} of off)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
