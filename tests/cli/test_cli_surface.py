"""The CLI's surface: every verb has a command, every command has help, the real script runs."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from engramdb import Memory
from engramdb.cli import cli

from .conftest import Run, out_json

SCRIPT = Path(sys.executable).with_name("engramdb")
# Not verbs: ``open`` constructs a Memory (every command opens one from --url) and
# ``with_namespace``/``close`` manage it.
EXCLUDED = {"open", "with_namespace", "close"}
RENAMED = {"import_": ("import",), "get_slots": ("slots", "get"), "set_slots": ("slots", "set")}


def _all_commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, cmd in group.commands.items():
        found[(*prefix, name)] = cmd
        if isinstance(cmd, click.Group):
            found.update(_all_commands(cmd, (*prefix, name)))
    return found


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def test_every_memory_verb_has_a_command() -> None:
    verbs = [
        name
        for name, member in inspect.getmembers(Memory, inspect.isfunction)
        if not name.startswith("_") and name not in EXCLUDED
    ]
    assert len(verbs) >= 25
    commands = _all_commands(cli)
    missing = [v for v in verbs if RENAMED.get(v, (v.replace("_", "-"),)) not in commands]
    assert missing == [], f"CLI lacks commands for Memory verbs: {missing}"


def test_every_command_has_help() -> None:
    runner = CliRunner()
    commands = _all_commands(cli)
    assert len(commands) >= 30
    for path, cmd in commands.items():
        assert (cmd.help or "").strip(), f"`engramdb {' '.join(path)}` has no help"
        assert cmd.get_short_help_str().strip()
        if path == ("bench",):
            continue  # its --help belongs to the benchmark tool it delegates to
        res = runner.invoke(cli, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert cmd.get_short_help_str(limit=200).rstrip(".")[:30] in " ".join(res.output.split())
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"`engramdb {' '.join(path)} {param.opts[0]}` has no help"


def test_installed_script_runs_with_exit_codes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'proc.db'}"
    base = [str(SCRIPT), "--no-model", "--url", url, "--json"]
    added = subprocess.run(
        [*base, "add", "Carol keeps bees in Oslo", "--user-id", "carol"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    )
    rid = json.loads(added.stdout)[0]["record"]["id"]
    # Without --no-model the script finds the store's own (hash) embedder: no model load.
    found = subprocess.run(
        [str(SCRIPT), "--url", url, "--json", "search", "bees", "--user-id", "carol"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    )
    assert [h["record"]["id"] for h in json.loads(found.stdout)["hits"]] == [rid]
    missing = subprocess.run(
        [*base, "get", "nope"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert missing.returncode == 3
    assert json.loads(missing.stderr)["error"] == "not_found"
    assert "Traceback" not in missing.stderr and missing.stdout == ""
    usage = subprocess.run(
        [str(SCRIPT), "frobnicate"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert usage.returncode == 2 and "No such command" in usage.stderr


def test_env_url_is_the_default(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("ENGRAM_NAMESPACE", "envns")
    assert run("--no-model", "add", "from the environment", base=False).exit_code == 0
    assert out_json(run("--json", "namespaces", base=False)) == {"envns": 1}
    assert (tmp_path / "env.db").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_prints_urls_and_serves_openapi(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [str(SCRIPT), "--no-model", "--url", f"sqlite:///{tmp_path / 's.db'}", "serve"]
        + ["--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start in 60 s"
                time.sleep(0.2)
        assert resp.status_code == 200
        schema = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert schema["paths"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert f"http://127.0.0.1:{port}/docs" in err and f"http://127.0.0.1:{port}" in err


def test_bench_delegates_its_arguments(tmp_path: Path) -> None:
    res = subprocess.run(
        [str(SCRIPT), "bench", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,  # the installed package, not the checkout directory, must be found
        timeout=120,
    )
    if importlib.util.find_spec("bench.cli") is None:
        assert res.returncode == 1 and "benchmark package is not installed" in res.stderr
        return
    direct = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == direct.returncode == 0
    assert res.stdout.split()[1:] == direct.stdout.split()[1:]  # the same help text
