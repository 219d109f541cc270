"""Plain-text tables for ``evaluate.py`` results (STQ/AQ/SQ, VPQ per window, per-class IoU/PQ)."""

from __future__ import annotations

from typing import Optional


def _pct(v: Optional[float]) -> str:
    return "-" if v is None or v != v else f"{100.0 * v:6.2f}"


def format_table(result: dict) -> str:
    """A multi-line summary of an ``evaluate_folders`` / ``evaluate_model`` result (x100)."""
    vpq = result["vpq"]
    ks = [k for k in vpq if k != "mean"]
    lines = [
        f"{result['format']}: {result['num_sequences']} sequences, {result['num_frames']} frames",
        "",
        f"{'STQ':>7} {'AQ':>7} {'SQ':>7}",
        f"{_pct(result['STQ']):>7} {_pct(result['AQ']):>7} {_pct(result['SQ']):>7}",
        "",
        f"{'window':>8} {'VPQ':>7} {'thing':>7} {'stuff':>7}",
    ]
    for k in ks + ["mean"]:
        v = vpq[k]
        lines.append(
            f"{k:>8} {_pct(v['VPQ']):>7} {_pct(v['VPQ_thing']):>7} {_pct(v['VPQ_stuff']):>7}"
        )
    lines.append("")
    width = max([len("class")] + [len(r["name"]) for r in result["per_class"].values()])
    header = f"{'id':>3} {'class':<{width}} {'kind':<5} {'IoU':>7}" + "".join(
        f" {'PQ ' + k:>8}" for k in ks
    )
    lines.append(header)
    for cid, row in result["per_class"].items():
        pqs = "".join(f" {_pct(row['PQ'].get(k)):>8}" for k in ks)
        kind = "thing" if row["thing"] else "stuff"
        lines.append(f"{cid:>3} {row['name']:<{width}} {kind:<5} {_pct(row['IoU']):>7}{pqs}")
    return "\n".join(lines)
