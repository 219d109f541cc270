"""A training run's scalars: ``metrics.jsonl`` (one JSON object a line) and TensorBoard.

Only the main rank writes. A resumed run appends; a new run starts the file again. Every line
is written whole and flushed, so the file is valid JSON lines even after a crash.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ScalarLog:
    """metrics.jsonl + TensorBoard scalars (``tb/``), main rank only."""

    def __init__(self, out: Path, enabled: bool, append: bool):
        self.enabled = enabled
        self.tb: Any = None
        self.path = Path(out) / "metrics.jsonl"
        if not enabled:
            return
        if not append and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out) / "tb"))
        except Exception as e:  # tensorboard missing or broken: keep the JSON log
            log.warning("TensorBoard disabled: %s", e)

    def write(self, step: int, scalars: dict[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "step": step, **scalars}) + "\n")
        if self.tb is not None:
            for k, v in scalars.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
