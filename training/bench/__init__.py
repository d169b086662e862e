"""Benchmarks: figures measured side by side with reference implementations."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any


def write_result(result: Mapping[str, Any], as_json: bool) -> None:
    """Print a flat benchmark result: one JSON line, or one ``key  value`` line per entry."""
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    for key, value in result.items():
        sys.stdout.write(f"{key:<28} {value}\n")
