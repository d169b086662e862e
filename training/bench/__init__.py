"""Benchmarks: figures measured side by side with reference implementations."""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def expand_bags(patterns: Sequence[str], prog: str) -> list[Path] | None:
    """The bags that paths or glob ``patterns`` name, sorted, or None when there are none.

    A missing path (or a pattern matching nothing) is named on stderr, prefixed ``prog:``.
    """
    bags = sorted({Path(f) for pat in patterns for f in (glob.glob(pat) or [pat])})
    missing = [str(b) for b in bags if not b.exists()]
    if missing or not bags:
        sys.stderr.write(f"{prog}: no such bag(s): {missing or list(patterns)}\n")
        return None
    return bags


def write_result(result: Mapping[str, Any], as_json: bool) -> None:
    """Print a flat benchmark result: one JSON line, or one ``key  value`` line per entry."""
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    for key, value in result.items():
        sys.stdout.write(f"{key:<28} {value}\n")
