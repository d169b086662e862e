r"""The node pipeline over many recordings, under several settings side by side in one run.

Each bag is replayed (:func:`training.replay.replay`, as ``facealign replay``) once per variant
(a set of node parameters), bag by bag with the variants interleaved, so machine load falls on
all of them alike. Reported per variant: the bags' mean and median NME of the answers with a
face, mean coverage (targets answered with a face), mean FR@0.10, mean face rate (answers
with a face among all answers: on a recording without a face, e.g. ``make_set --no-face``, the
false-face rate), the search/detector counters, and one row per bag; with several ``--bags``
patterns, also per pattern (``groups``).

    python -m training.bench.replay_set --bags 'data/real_dev/photo_*' \\
        --variant face_detector=grid --variant face_detector=blazeface --json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.bench import expand_bags

COUNTERS = ("detect_runs", "detections", "detector_runs", "box_corrections", "redetections")


def _summary(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def values(key: str) -> np.ndarray:
        return np.array([r[key] for r in rs if r[key] is not None], np.float64)

    nme, cov, fr, face = (values(k) for k in ("nme", "coverage", "fr10", "face_rate"))
    return {
        "bags": len(rs),
        "mean_nme": float(nme.mean()) if nme.size else None,
        "median_nme": float(np.median(nme)) if nme.size else None,
        "mean_coverage": float(cov.mean()) if cov.size else None,
        "mean_fr10": float(fr.mean()) if fr.size else None,
        "mean_face_rate": float(face.mean()) if face.size else None,
        **{c: int(sum(r[c] for r in rs)) for c in COUNTERS},
    }


def run(
    bags: Sequence[Path],
    variants: Sequence[dict[str, Any]],
    base: dict[str, Any],
    group: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Replay every bag under every variant; the summary described in the module docstring.

    ``group``: name -> bag paths summarised together (also) under ``groups``. Rows carry the
    bag's directory name (``bag``) and its path (``path``): recordings of two sets may share a
    name (e.g. the same seed under two RGB cameras).
    """
    from facealign_ros.pipeline import PipelineConfig
    from training.replay import replay

    configs = [PipelineConfig.from_dict({"device": "cpu", **base, **v}) for v in variants]
    rows: list[list[dict[str, Any]]] = [[] for _ in variants]
    with tempfile.TemporaryDirectory() as tmp:
        for i, bag in enumerate(bags):
            for k, cfg in enumerate(configs):
                s = replay(bag, Path(tmp) / f"{i}-{k}", cfg, progress=False)
                m = s["metrics"] or {}
                rows[k].append({
                    "bag": bag.name,
                    "path": str(bag),
                    "nme": m.get("nme"),
                    "coverage": m.get("coverage"),
                    "fr10": m.get("fr10"),
                    "face_rate": s["face_rate"],
                    "compute_p50_ms": s["compute_p50_ms"],
                    **{c: s["pipeline"].get(c, 0) for c in COUNTERS},
                })  # fmt: skip
    out = []
    for v, rs in zip(variants, rows, strict=True):
        groups = {name: _summary([r for r in rs if r["path"] in members])
                  for name, members in (group or {}).items()}  # fmt: skip
        out.append({"params": v, **_summary(rs), "groups": groups, "rows": rs})
    return {"base": base, "variants": out}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.bench.replay_set --bags GLOB... --variant K=V[,K=V] ...``."""
    p = argparse.ArgumentParser(prog="python -m training.bench.replay_set", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--bags", nargs="+", required=True, help="bag paths or glob patterns")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="K=V[,K=V]",
        help="node parameters of one variant (repeat; none: the defaults only)",
    )
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="node parameter for every variant")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    found = {pat: expand_bags([pat], "replay_set") for pat in args.bags}  # each pattern once
    if any(v is None for v in found.values()):
        return 2
    group = {pat: {str(b) for b in v} for pat, v in found.items()}
    bags = sorted({b for v in found.values() for b in v})
    from facealign_ros.bag import BagError
    from facealign_ros.face.detector import DetectorError
    from facealign_ros.pipeline import ModelLoadError
    from training.replay import parse_params

    try:
        variants = [parse_params([v]) for v in args.variant] or [{}]
        result = run(bags, variants, parse_params(args.param), group if len(group) > 1 else None)
    except (ValueError, BagError, ModelLoadError, DetectorError) as exc:
        sys.stderr.write(f"replay_set: {exc}\n")
        return 2
    if args.json:
        import json

        sys.stdout.write(json.dumps(result) + "\n")
        return 0

    def f(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None else format(x, fmt)

    for v in result["variants"]:
        sys.stdout.write(
            f"{v['params']}: {v['bags']} bags, NME mean {f(v['mean_nme'])} median "
            f"{f(v['median_nme'])}, coverage {f(v['mean_coverage'])}, FR {f(v['mean_fr10'])}, "
            f"face rate {f(v['mean_face_rate'])}; "
            + ", ".join(f"{c} {v[c]}" for c in COUNTERS)
            + "\n"
        )
        for name, g in v["groups"].items():
            sys.stdout.write(
                f"  {name}: {g['bags']} bags, NME mean {f(g['mean_nme'])} median "
                f"{f(g['median_nme'])}, coverage {f(g['mean_coverage'])}, "
                f"face rate {f(g['mean_face_rate'])}\n"
            )
        for r in v["rows"]:
            sys.stdout.write(
                f"  {r['bag']:<36} NME {f(r['nme'])}  coverage {f(r['coverage'], '.2f')}  "
                f"face rate {f(r['face_rate'], '.2f')}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
