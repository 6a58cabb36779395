"""Proof in use: a LangGraph graph with EngramSaver and EngramStore, across two processes.

The first process writes a memory in one thread and leaves a second thread interrupted; the
second process (same file, nothing in memory) resumes that thread, which recalls the memory
the other thread stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).with_name("langgraph_agent.py")
REPO = Path(__file__).resolve().parents[2]


def run_agent(url: str, phase: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(AGENT), url, phase],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_graph_resumes_after_restart_and_recalls_across_threads(store_url: str) -> None:
    first = run_agent(store_url, "start")
    assert first == {"t2_next": ["recall"]}
    second = run_agent(store_url, "resume")
    assert second["t2_recalled"] == ["alice loves ramen"]
    assert second["t2_messages"] == ["what food does alice love"]
    assert second["t1_messages"] == ["remember: alice loves ramen"]
    assert second["t2_history"] >= 3
