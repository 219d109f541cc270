"""Training curves PNG from a run's ``metrics.jsonl`` (drawn with OpenCV; no matplotlib needed).

    python training/plot_curves.py runs/tiny/metrics.jsonl --out runs/tiny/curves.png

Panels: total loss (log scale, raw and smoothed), grouped loss terms (RPN, stage classification,
stage masks, tracking; key frame), learning rate, and validation STQ/AQ/SQ/VPQ when logged.
All four panels share one iteration axis (0 to the last logged step), so a single validation
point sits where it was taken. Drawn in BGR (OpenCV's order) from RGB colour constants.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from vknet_core.atomic import write_bytes_atomic
from vknet_core.cli import ArgumentParser, run_cli

PANEL_W, PANEL_H, MARGIN = 560, 300, 60
COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]  # RGB: blue, orange, green, red, ...


def bgr(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """OpenCV draws and writes BGR; the constants above are RGB."""
    return (rgb[2], rgb[1], rgb[0])


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(train rows, val rows) of a metrics.jsonl; later rows of a step win (resumed runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such metrics file (expected OUT/metrics.jsonl of training/train.py)"
        )
    rows: dict[tuple[str, int], dict] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{path}:{n}: not a JSON line ({e}); expected metrics.jsonl "
                "written by training/train.py"
            ) from None
        if not isinstance(r, dict) or not isinstance(r.get("step"), int):
            got = sorted(r)[:8] if isinstance(r, dict) else type(r).__name__
            raise ValueError(
                f"{path}:{n}: expected a training metrics row with an integer "
                f"'step' (metrics.jsonl of training/train.py), got {got}"
            )
        rows[(r.get("kind", "train"), r["step"])] = r
    train = [r for (k, _), r in sorted(rows.items(), key=lambda x: x[0][1]) if k == "train"]
    val = [r for (k, _), r in sorted(rows.items(), key=lambda x: x[0][1]) if k == "val"]
    return train, val


def smooth(y: np.ndarray, k: int) -> np.ndarray:
    if len(y) < 3 or k < 2:
        return y
    k = min(k, len(y))
    pad = np.concatenate([np.full(k - 1, y[0]), y])
    return np.convolve(pad, np.ones(k) / k, mode="valid")


def nice_ticks(lo: float, hi: float, n: int = 5, min_step: float = 1.0) -> list[float]:
    """About ``n`` round tick values (1, 2 or 5 x 10^k apart, at least ``min_step``) inside
    [lo, hi]; iterations are whole numbers, so the default never gives 0.5."""
    span = max(hi - lo, 1e-12)
    raw = span / n
    step = 10 ** math.floor(math.log10(raw))
    step = max(step * next(m for m in (1, 2, 5, 10) if m * step >= raw), min_step)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _panel(
    title: str,
    series: list[tuple[str, np.ndarray, np.ndarray]],
    log_y: bool,
    x_range: tuple[float, float],
) -> np.ndarray:
    """One BGR panel; every panel gets the same ``x_range`` (iterations)."""
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    x0, y0, x1, y1 = MARGIN, 28, PANEL_W - 12, PANEL_H - 34
    cv2.putText(img, title, (x0, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    pts = [(x, y) for _, x, y in series if len(x)]
    if not pts:
        cv2.putText(
            img,
            "no data",
            (x0 + 10, (y0 + y1) // 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (120, 120, 120),
            1,
            cv2.LINE_AA,
        )
        return img
    ys = np.concatenate([y for _, y in pts]).astype(np.float64)
    ok = np.isfinite(ys) & ((ys > 0) if log_y else True)
    if not ok.any():
        return img
    tf = (lambda v: np.log10(np.maximum(v, 1e-12))) if log_y else (lambda v: v)
    lo, hi = float(tf(ys[ok]).min()), float(tf(ys[ok]).max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    xl, xh = x_range
    px = lambda x: (x0 + (x - xl) / (xh - xl) * (x1 - x0)).astype(np.int32)  # noqa: E731
    py = lambda y: (y1 - (tf(y) - lo) / (hi - lo) * (y1 - y0)).astype(np.int32)  # noqa: E731
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    for i in range(5):  # horizontal grid + y labels
        v = lo + (hi - lo) * i / 4
        y = int(y1 - (y1 - y0) * i / 4)
        cv2.line(img, (x0, y), (x1, y), (225, 225, 225), 1)
        label = f"{10**v:.3g}" if log_y else f"{v:.3g}"
        cv2.putText(
            img, label, (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA
        )
    for v in nice_ticks(xl, xh):  # x labels at round iteration numbers
        x = int(px(np.float64(v)))
        cv2.line(img, (x, y1), (x, y1 + 3), (0, 0, 0), 1)
        cv2.putText(
            img,
            f"{v:g}",
            (x - 10, y1 + 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.putText(
        img,
        "iteration",
        ((x0 + x1) // 2 - 25, PANEL_H - 6),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.35,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    for i, (name, x, y) in enumerate(series):
        colour = bgr(COLOURS[i % len(COLOURS)])
        keep = np.isfinite(y) & ((y > 0) if log_y else True)
        if not keep.any():
            continue
        p = np.stack([px(x[keep].astype(np.float64)), py(y[keep].astype(np.float64))], 1)
        if len(p) == 1:
            cv2.circle(img, tuple(int(v) for v in p[0]), 3, colour, -1, cv2.LINE_AA)
        else:
            cv2.polylines(img, [p.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
        ly = y0 + 14 + 14 * i
        cv2.line(img, (x1 - 150, ly - 4), (x1 - 132, ly - 4), colour, 2)
        cv2.putText(
            img, name, (x1 - 128, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA
        )
    return img


def _sum_keys(rows: list[dict], prefixes: Sequence[str]) -> np.ndarray:
    return np.array(
        [
            sum(
                v
                for k, v in r.items()
                if k.startswith(tuple(prefixes))
                and not k.endswith("_ref")
                and isinstance(v, (int, float))
            )
            for r in rows
        ],
        np.float64,
    )


def plot_curves(metrics: Path, out: Path, smooth_window: Optional[int] = None) -> Path:
    """Render the curves of ``metrics`` (metrics.jsonl) into the PNG ``out``."""
    train, val = read_metrics(metrics)
    if not train:
        raise ValueError(f"{metrics} has no training rows")
    step = np.array([r["step"] for r in train], np.float64)
    loss = np.array([r.get("loss", np.nan) for r in train], np.float64)
    vstep = np.array([r["step"] for r in val], np.float64)
    last = float(max(step.max(), vstep.max() if len(vstep) else 0.0, 1.0))
    x_range = (0.0, last * 1.03)  # a little room so a point at the last step is not clipped
    k = smooth_window or max(1, len(train) // 25)
    panels = [
        _panel(
            "total loss",
            [("raw", step, loss), (f"mean of {k}", step, smooth(loss, k))],
            log_y=True,
            x_range=x_range,
        ),
        _panel(
            "loss terms (key frame, smoothed)",
            [
                ("rpn", step, smooth(_sum_keys(train, ["loss_rpn_"]), k)),
                ("cls", step, smooth(_sum_keys(train, ["loss_cls_"]), k)),
                ("mask+dice", step, smooth(_sum_keys(train, ["loss_mask_", "loss_dice_"]), k)),
                ("track", step, smooth(_sum_keys(train, ["loss_track"]), k)),
            ],
            log_y=True,
            x_range=x_range,
        ),
        _panel(
            "learning rate",
            [("lr", step, np.array([r.get("lr", np.nan) for r in train], np.float64))],
            log_y=True,
            x_range=x_range,
        ),
    ]
    panels.append(
        _panel(
            "validation",
            [
                (
                    name,
                    vstep,
                    np.array(
                        [np.nan if r.get(name) is None else r[name] for r in val], np.float64
                    ),
                )
                for name in ("STQ", "AQ", "SQ", "VPQ")
            ],
            log_y=False,
            x_range=x_range,
        )
    )
    grid = np.concatenate([np.concatenate(panels[:2], 1), np.concatenate(panels[2:], 1)], 0)
    ok, png = cv2.imencode(".png", grid)  # BGR, as drawn
    if not ok:
        raise OSError(f"could not encode the curves for {out}")
    return write_bytes_atomic(out, png.tobytes())


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = ArgumentParser(prog="plot_curves.py", description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", type=Path, help="metrics.jsonl written by training/train.py")
    p.add_argument("--out", type=Path, help="PNG to write (default: curves.png beside metrics)")
    p.add_argument("--smooth", type=int, help="moving-average window (default: len/25)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    a = parse_args(argv)

    def body() -> int:
        if a.smooth is not None and a.smooth < 1:
            raise ValueError(f"--smooth must be >= 1, got {a.smooth}")
        out = plot_curves(a.metrics, a.out or a.metrics.with_name("curves.png"), a.smooth)
        print(f"wrote {out}")
        return 0

    return run_cli("plot_curves.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
