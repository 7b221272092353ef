"""The client is a package of its own: it builds into a wheel that depends on httpx alone (the
frameworks are extras), and importing it loads neither Django nor a framework."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from tests.conftest import BASE_DIR

CLIENT_DIR = BASE_DIR / "clients" / "python"


def test_the_wheel_depends_on_httpx_alone_with_the_frameworks_as_extras(tmp_path: Path) -> None:
    # A copy, so that setuptools' build directory lands in tmp_path, not in the checkout.
    source = tmp_path / "source"
    shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("agent_platform_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
    for module in ("__init__", "client", "errors", "openai_agents", "langchain"):
        assert f"agent_platform_client/{module}.py" in names
    assert "agent_platform_client/py.typed" in names
    requires = metadata.get_all("Requires-Dist") or []
    assert [r for r in requires if "extra ==" not in r] == ["httpx<1,>=0.27"]
    assert sorted(metadata.get_all("Provides-Extra") or []) == ["langchain", "openai-agents"]
    assert any(r.startswith("openai-agents") and 'extra == "openai-agents"' in r for r in requires)
    assert any(r.startswith("langchain-core") and 'extra == "langchain"' in r for r in requires)


def test_importing_the_client_loads_no_framework_and_no_django() -> None:
    probe = (
        "import sys, agent_platform_client\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        "print(sorted(loaded & {'django', 'agents', 'langchain_core', 'openai'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert result.stdout.strip() == "[]"
