"""Schemathesis against /api/schema/: every operation, every check, 100+ examples each.

It runs the `st` command line (all phases: coverage, fuzzing, stateful) against gunicorn on
the test database, once with admin keys and once with an ordinary user's keys. No response
may be a 5xx or contradict the schema (status, content type, headers, body).

Where a check is configured rather than taken as is, the reason is written next to it in
``CONFIG``. Figures (examples per operation, keys the fuzzer burned) are printed and kept in
the test's tmp directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.servers import BASE_DIR, Gunicorn

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_EXAMPLES = 100

# Configuration for the run, with why each line is there.
CONFIG = """
[generation]
# Every text field refuses NUL with a 400 (PostgreSQL cannot store it), which the schema cannot
# say. As "valid" data NUL would only show that 400 again; test_hostile_input.py proves NUL is
# refused everywhere: bodies, query strings, paths, headers.
allow-x00 = false

[checks.negative_data_rejection]
# 413 (body over API_MAX_BODY_BYTES) and 414 (a request line over gunicorn's limit) are refusals
# too; 5xx is not (not_a_server_error fails it).
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429"]

[checks.positive_data_acceptance]
# A schema-valid body can still exceed API_MAX_BODY_BYTES (tool_calls alone may hold 128 x 64 KiB).
expected-statuses = ["2xx", "401", "403", "404", "409", "413", "414", "429"]

[[operations]]
# Rules the schema cannot express answer 400 naming the field: expires_at in the future,
# Django's password validators, names and titles that are not only whitespace, no deleting
# yourself, no transfer to the current owner, JSON objects (context, metadata, tool calls) of at
# most 64 KiB serialized, message items of at most MESSAGE_MAX_ITEM_BYTES as text (batches too),
# and cursors, which are opaque: only one the server issued is valid.
include-name = [
    "POST /api/v1/api-keys/",
    "POST /api/v1/sessions/",
    "PATCH /api/v1/sessions/{id}/",
    "POST /api/v1/sessions/{session_pk}/messages/",
    "POST /api/v1/sessions/{session_pk}/messages/batch/",
    "POST /api/v1/users/",
    "PATCH /api/v1/users/{id}/",
    "DELETE /api/v1/users/{id}/",
    "POST /api/v1/sessions/{id}/transfer/",
    "GET /api/v1/sessions/{session_pk}/messages/",
    "GET /api/v1/audit-logs/",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "413", "414", "429"]
"""


@pytest.fixture
def app_env() -> dict[str, str]:
    # The fuzzer revokes its own keys (see schemathesis_hooks.py); with the per-address auth
    # failure throttle on, those 401s would soon turn every request into a 429 and hide the
    # rest. The throttle has its own tests (tests/api/test_authentication.py).
    return {"AUTH_FAILURE_RATE": "none"}


def _key_pool(actor: str, make_user, make_key) -> tuple[list[str], str]:
    if actor == "admin":
        admins = [make_user(f"fuzz-admin-{i}@example.com", roles=["admin"]) for i in range(40)]
        keys = [make_key(a, scopes=("read", "write", "admin"), name=f"fuzz {n}")[1] for a in admins for n in range(2)]
        return keys, "/api/v1/users/?page_size=1"
    user = make_user("fuzz-user@example.com", roles=["user"])
    return [make_key(user, name=f"fuzz {n}")[1] for n in range(60)], "/api/v1/users/me/"


def _scenarios(ndjson: Path) -> tuple[Counter[tuple[str, str]], Counter[int], list[str]]:
    """Examples per (phase, operation), response statuses, and the interactions that failed a check."""
    examples: Counter[tuple[str, str]] = Counter()
    statuses: Counter[int] = Counter()
    failed: list[str] = []
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for interaction in (recorder.get("interactions") or {}).values():
            statuses[(interaction.get("response") or {}).get("status_code", 0)] += 1
        for case in (recorder.get("cases") or {}).values():
            # Stateful scenarios chain several operations: count each step for its own.
            examples[(finished["phase"], f"{case['value']['method']} {case['value']['path']}")] += 1
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check["status"] == "failure":
                    case = recorder["cases"][case_id]["value"]
                    failed.append(f"{check['name']}: {case['method']} {case['path']} {check.get('failure_info')}")
    return examples, statuses, failed


@dataclass
class Run:
    summary: dict
    examples: Counter[tuple[str, str]]
    statuses: Counter[int]
    failed: list[str]
    output: str
    keys: dict[str, Any]  # what the key pool hooks saw (schemathesis_hooks.py)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.summary["failures"] and not self.summary["errors"]


def run_schemathesis(server: Gunicorn, workdir: Path, env: dict[str, str], *args: str) -> Run:
    workdir.mkdir()
    env = {**env, "REL_ST_STATS": str(workdir / "keys.json")}
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(workdir.parent / "schemathesis.toml"),
        "run",
        f"{server.url}/api/schema/",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--mode",
        "all",
        "--report",
        "json,ndjson",
        "--report-dir",
        str(workdir),
        "--warnings",
        "off",
        "--request-timeout",
        "30",
        *args,
    ]
    result = subprocess.run(command, env=env, cwd=workdir, capture_output=True, text=True, timeout=900, check=False)
    (report,) = workdir.glob("json-*.json")
    (events,) = workdir.glob("ndjson-*.ndjson")
    examples, statuses, failed = _scenarios(events)
    if result.returncode != 0 and not failed:
        failed.append(f"st exited with {result.returncode}")
    output = result.stdout[-8000:] + result.stderr[-2000:]
    keys = json.loads((workdir / "keys.json").read_text())
    return Run(json.loads(report.read_text()), examples, statuses, failed, output, keys)


@pytest.mark.parametrize("actor", ["admin", "user"])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    app_server: Gunicorn, actor: str, make_user, make_key, tmp_path: Path
) -> None:
    keys, probe_path = _key_pool(actor, make_user, make_key)
    (tmp_path / "pool.json").write_text(
        json.dumps({"keys": keys, "base_url": app_server.url, "probe_path": probe_path})
    )
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    env = {
        **os.environ,
        "PYTHONPATH": str(BASE_DIR),
        "SCHEMATHESIS_HOOKS": "tests.reliability.schemathesis_hooks",
        "REL_ST_POOL": str(tmp_path / "pool.json"),
        "NO_COLOR": "1",
    }

    main = run_schemathesis(app_server, tmp_path / "all-phases", env, "--phases", "examples,coverage,fuzzing,stateful")
    assert main.ok, f"{main.failed[:20]}\n{main.output}"
    assert main.summary["operations"]["tested"] == main.summary["operations"]["total"] >= 26, main.summary
    per_operation: Counter[str] = Counter()
    for (_, label), n in main.examples.items():
        per_operation[label] += n
    operations = {label for (phase, label), _ in main.examples.items() if phase == "fuzzing"}
    assert len(operations) == main.summary["operations"]["total"], operations

    # Schemathesis stops fuzzing a DELETE after its first successful delete, so those fall short of
    # 100 examples; a fuzzing-only pass (nothing to delete there: the ids are drawn) tops them up.
    short = sorted(label for label in operations if per_operation[label] < MAX_EXAMPLES)
    top_up = None
    if short:
        names = [arg for label in short for arg in ("--include-name", label)]
        top_up = run_schemathesis(app_server, tmp_path / "top-up", env, "--phases", "fuzzing", *names)
        assert top_up.ok, f"{top_up.failed[:20]}\n{top_up.output}"
        for (_, label), n in top_up.examples.items():
            per_operation[label] += n

    pool = main.keys
    by_phase: Counter[str] = Counter()
    for (phase, _), n in main.examples.items():
        by_phase[phase] += n
    figures = {
        "actor": actor,
        "seed": main.summary["seed"],
        "examples_total": main.summary["test_cases"]["generated"]
        + (top_up.summary["test_cases"]["generated"] if top_up else 0),
        "examples_by_phase": dict(by_phase),
        "operations": len(operations),
        "fewest_examples_for_one_operation": min(per_operation[label] for label in operations),
        "topped_up": short,
        "keys_burned_by_the_fuzzer": pool["switches"],
        "statuses": dict(sorted(main.statuses.items())),
        "seconds": round(main.summary["running_time"] + (top_up.summary["running_time"] if top_up else 0), 1),
    }
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
    print("schemathesis figures:", json.dumps(figures))  # shown with -s or -rA

    assert not pool["exhausted"], f"the fuzzer burned all {len(keys)} keys; the run stopped testing"
    # The run was authenticated (the hooks were loaded and did their job), not 4000 polite 401s.
    assert pool["responses_seen"] >= 1000, pool
    answered = sum(main.statuses.values())
    # Reached the data: a success, or a 409 from an owned object's state. Most message mutations
    # the fuzzer sends carry a random expected_revision, and a stale one is a 409 by contract.
    reached = sum(n for status, n in main.statuses.items() if 200 <= status < 300 or status == 409)
    assert reached > answered // 5, main.statuses
    assert sum(n for status, n in main.statuses.items() if 200 <= status < 300) > answered // 8, main.statuses
    assert main.statuses[401] < answered // 4, main.statuses
    assert all(per_operation[label] >= MAX_EXAMPLES for label in operations), {
        label: per_operation[label] for label in operations if per_operation[label] < MAX_EXAMPLES
    }
