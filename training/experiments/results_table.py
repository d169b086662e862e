"""Markdown tables of label-efficiency results (``training.experiments.label_efficiency``).

A row is one evaluated fine-tune: ``fraction`` (label fraction), ``finetune`` (``fused`` or
``event``), ``seed``, ``init`` (``scratch`` or the SSMER variant), ``fused_nme``, ``event_nme``
(NME normalised by the inter-ocular distance) and ``event_fr10`` (failure rate at 0.10).
"""

from __future__ import annotations

import statistics


def _key(r: dict) -> tuple:
    return r["fraction"], r["finetune"], r["seed"]


def table(rows: list[dict]) -> str:
    """Markdown table of the results (NME normalised by inter-ocular distance).

    Every row's ratios are to the run from scratch with the same label fraction, fine-tuning
    mode and seed; with several seeds a second table gives the means over seeds.
    """
    lines = [
        "| labels | fine-tuning | seed | initialisation | fused NME | event-only NME "
        "| event FR@0.10 | fused NME / scratch | event NME / scratch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    scratch = {_key(r): r for r in rows if r["init"] == "scratch"}
    nan = float("nan")
    for r in sorted(rows, key=lambda r: (*_key(r), r["init"] != "scratch", r["init"])):
        ref = scratch.get(_key(r))
        f_ratio = r["fused_nme"] / ref["fused_nme"] if ref else nan
        e_ratio = r["event_nme"] / ref["event_nme"] if ref else nan
        lines.append(
            f"| {r['fraction']:.0%} | {r['finetune']} | {r['seed']} | {r['init']} "
            f"| {r['fused_nme']:.4f} | {r['event_nme']:.4f} | {r['event_fr10']:.3f} "
            f"| {f_ratio:.3f} | {e_ratio:.3f} |"
        )
    seeds = {r["seed"] for r in rows}
    if len(seeds) > 1:
        lines += [
            "",
            "| labels | fine-tuning | initialisation | seeds | mean fused NME | mean event NME "
            "| fused / scratch | event / scratch |",
            "|---|---|---|---|---|---|---|---|",
        ]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault((r["fraction"], r["finetune"], r["init"]), []).append(r)
        means = {
            k: (
                statistics.fmean(r["fused_nme"] for r in g),
                statistics.fmean(r["event_nme"] for r in g),
                len(g),
            )
            for k, g in groups.items()
        }
        for (fraction, mode, init), (fused, event, n) in sorted(
            means.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "scratch", kv[0][2])
        ):
            ref = means.get((fraction, mode, "scratch"))
            lines.append(
                f"| {fraction:.0%} | {mode} | {init} | {n} | {fused:.4f} | {event:.4f} "
                f"| {fused / ref[0] if ref else nan:.3f} | {event / ref[1] if ref else nan:.3f} |"
            )
    return "\n".join(lines) + "\n"
