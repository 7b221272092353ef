"""Instructions per request, counted by valgrind's callgrind: a figure that does not move with
whatever else the machine is doing (wall-clock req/s on a shared 2-core box moves by 15%).

    .venv/bin/python bench/instructions.py                       # every scenario
    .venv/bin/python bench/instructions.py --only bare,hello,me  # some of them

Seeds the profile database the way `make profile` does, then for each scenario runs a child
process under `valgrind --tool=callgrind` twice, calling the real WSGI application in process
(full middleware stack, request log written as in production, the pool, PostgreSQL over its
socket) ``--few`` and ``--many`` times after a warm-up; the difference of the two totals over
the difference of the counts is the cost of one request, start-up and warm-up cancelled out.
``bare`` is the bare Django hello app of `bench/bare` (the benchmark's floor). Needs valgrind
(Debian's package).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import RESULTS, manage, resolve_database, seed, service_env

SCENARIOS = [
    "bare",
    "hello",
    "live",
    "me",
    "me-free",
    "detail",
    "detail-free",
    "me-free-redis",
    "detail-free-redis",
    "list",
    "messages",
    "append-spread",
    "append-hot",
    "api-keys",
]


def child(scenario: str, count: int, data_file: str) -> None:
    """Under valgrind: warm up, then ``count`` requests of one scenario."""
    data = json.loads(Path(data_file).read_text())
    if scenario == "bare":
        from bench.bare.wsgi import application
    else:
        from config.wsgi import application
    from bench.profile import build_scenarios, wsgi_caller

    if scenario != "bare":
        from apikeys import authentication

        # Under valgrind a request takes ~50x longer, so the half-second key reuse would cover
        # 50x fewer requests than it does at speed (hundreds per worker, the fetch amortised to
        # nothing), and the count would depend on the machine's load. Counted here: the reuse.
        authentication.KEY_REUSE_SECONDS = 3600.0

    if scenario == "bare":
        call = wsgi_caller(application, "GET", "/_bench/hello", None)
    else:
        call = build_scenarios(application, data, 4 * (count + 30))[scenario]
    for _ in range(30):
        status = call()
    if status >= 400:
        raise SystemExit(f"{scenario}: status {status}")
    # A full collection lands in one run's window and not the other's and moved the figure by up
    # to 100k per request: frozen, the start-up objects are not scanned, and the counts repeat to
    # the thousand.
    gc.collect()
    gc.freeze()
    for _ in range(count):
        call()


def counted(scenario: str, count: int, data_file: str, env: dict[str, str]) -> int:
    if scenario.endswith("-redis"):
        from bench.run import redis_url

        url = redis_url()
        if url is None:
            raise SystemExit(f"{scenario}: no Redis at BENCH_REDIS_URL (redis://127.0.0.1:6379/13)")
        env = {**env, "REDIS_URL": url}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "valgrind.log"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out",
                f"--log-file={log}",
                sys.executable,
                __file__,
                "--child",
                scenario,
                str(count),
                data_file,
            ],
            env={**env, "PYTHONHASHSEED": "0"},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        match = re.search(r"Collected : (\d+)", log.read_text())
        if not match:
            raise RuntimeError(f"no callgrind total in {log.read_text()[-2000:]}")
        return int(match.group(1))


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--few", type=int, default=20)
    parser.add_argument("--many", type=int, default=120)
    args = parser.parse_args()

    database_url = resolve_database("agent_platform_profile")
    env = service_env(database_url, 8000, 1)
    env["ALLOWED_HOSTS"] = "127.0.0.1"
    manage(env, "migrate", "--noinput", "-v", "0")
    os.environ.update(env)
    data = seed(database_url, spread_sessions=50)
    RESULTS.mkdir(parents=True, exist_ok=True)
    data_file = RESULTS / "instructions-data.json"
    data_file.write_text(json.dumps(data))

    only = [s.strip() for s in args.only.split(",") if s.strip()] or SCENARIOS
    rows = []
    for scenario in only:
        few = counted(scenario, args.few, str(data_file), env)
        many = counted(scenario, args.many, str(data_file), env)
        per_request = (many - few) / (args.many - args.few)
        rows.append((scenario, per_request))
        print(f"{scenario:14s} {per_request / 1000:10,.0f} k instructions/request", flush=True)
    floor = dict(rows).get("bare")
    if floor:
        print("\nper request, as a multiple of the bare Django hello:")
        for scenario, per_request in rows:
            print(f"  {scenario:14s} {per_request / floor:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
