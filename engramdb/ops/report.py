"""What a legacy migration tells its operator: the skip log and the JSON report.

Every item that cannot be migrated is one line of the log file (tab-separated: time,
``skipped``, provenance, reason), counted in the report by reason, so an operator can
fix the source and re-run (a re-run writes only what is new). The report is one JSON
object; ``--output`` writes it to a file as well.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any, TextIO


class SkipLog:
    """The log file of skipped items (opened on the first skip; nothing written otherwise)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self.first: list[dict[str, str]] = []
        self._fh: TextIO | None = None

    def skip(self, ref: str, reason: str) -> None:
        """Record one skipped item: ``ref`` is its provenance (kind:collection/source id)."""
        self.count += 1
        self.reasons[_reason_kind(reason)] += 1
        if len(self.first) < 20:
            self.first.append({"source": ref, "reason": reason})
        if self.path is None:
            return
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        clean = reason.replace("\t", " ").replace("\n", " ")
        self._fh.write(f"{now}\tskipped\t{ref}\t{clean}\n")
        self._fh.flush()

    def close(self) -> None:
        """Close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def summary(self) -> dict[str, Any]:
        """The report's ``skipped`` section."""
        return {
            "count": self.count,
            "by_reason": dict(self.reasons),
            "first": self.first,
            "log_file": self.path,
        }


def _reason_kind(reason: str) -> str:
    """The reason's first words, before any quoted value (for counting by kind)."""
    head = reason.split("(")[0].split(":")[0].split("'")[0].strip()
    return head or "unknown"


def write_report(report: dict[str, Any], path: str | None) -> None:
    """Write the report as JSON to ``path`` (if given)."""
    if path:
        Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
