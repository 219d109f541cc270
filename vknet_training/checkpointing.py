"""Training checkpoints: a normal vknet checkpoint plus a resume state file beside it.

    save_training_state(run / "last.pt", model, optimizer, scheduler, scaler, step, extra)
        -> run/last.pt        (``vknet_core.save_checkpoint``: loadable with ``load_checkpoint``)
           run/last.state.pt  (optimizer, LR scheduler, AMP scaler, step)
    step = load_training_state(run / "last.pt", model, optimizer, scheduler, scaler)
    load_init_weights(model, "other.pt")   # --init: weights only, shapes must fit

Both files are written atomically, the state file first, so a crash never leaves a model file
whose state file belongs to another step.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

import torch

from vknet_core.checkpoint import atomic_torch_save, read_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

STATE_FORMAT = "vknet-train-state-v1"


def state_path(checkpoint: Path) -> Path:
    """run/last.pt -> run/last.state.pt"""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".state.pt")


def resolve_resume(path: Union[str, Path]) -> Path:
    """A run folder (-> its last.pt) or a checkpoint file that has a state file beside it."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume: no checkpoint at {path} (expected a run folder "
            "with last.pt or a .pt file written by training/train.py)"
        )
    if not state_path(path).is_file():
        raise FileNotFoundError(
            f"--resume: {path} has no resume state {state_path(path)}; "
            "only checkpoints written by training/train.py can be resumed"
        )
    return path


def save_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Optional[Any],
    step: int,
    extra: Optional[dict[str, Any]] = None,
) -> Path:
    """Write ``path`` (model checkpoint) and ``state_path(path)`` (resume state)."""
    state = {
        "format": STATE_FORMAT,
        "step": int(step),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
    }
    atomic_torch_save(state, state_path(path))
    save_checkpoint(model, path, extra={"step": int(step), **(extra or {})})
    log.info("saved %s (step %d)", path, step)
    return Path(path)


def load_training_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Optional[Any],
) -> int:
    """Load weights and optimiser/scheduler/scaler state; returns the step to continue from."""
    path = resolve_resume(path)
    ckpt = read_checkpoint(path)
    if ckpt["config"]["name"] != model.cfg.name:
        raise ValueError(
            f"--resume: {path} holds preset {ckpt['config']['name']!r}, "
            f"but this run trains {model.cfg.name!r}"
        )
    model.load_state_dict(ckpt["model"], strict=True)
    try:  # our own file: plain tensors, numbers and dicts, so the safe loader reads it
        state = torch.load(state_path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise ValueError(
            f"{state_path(path)} is not a readable training state file "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{state_path(path)} is not a training state file (expected format {STATE_FORMAT!r})"
        )
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    step = int(state["step"])
    if step != int(ckpt.get("extra", {}).get("step", step)):
        raise ValueError(
            f"{path} (step {ckpt['extra'].get('step')}) and its state file "
            f"(step {step}) do not belong together"
        )
    log.info("resumed from %s at step %d", path, step)
    return step


def load_init_weights(model: torch.nn.Module, path: Union[str, Path]) -> tuple[int, int]:
    """``--init``: copy the weights of a vknet checkpoint whose tensors fit ``model``.

    Keys the model lacks or the file lacks are skipped (e.g. another backbone's extras) and
    counted; a tensor of another shape, or no shared key at all, is a ``ValueError`` naming
    the file's preset and the first mismatch (not torch's one line per tensor).
    Returns (keys missing in the file, keys unused from the file).
    """
    ckpt = read_checkpoint(path)
    theirs: dict[str, torch.Tensor] = ckpt["model"]
    ours = model.state_dict()
    name = ckpt.get("config", {}).get("name", "?")
    want = getattr(getattr(model, "cfg", None), "name", "?")
    bad = [k for k in theirs if k in ours and tuple(theirs[k].shape) != tuple(ours[k].shape)]
    shared = [k for k in theirs if k in ours]
    if bad or not shared:
        detail = (
            f"{len(bad)} of {len(shared)} shared tensors differ in shape, e.g. {bad[0]}: "
            f"{tuple(theirs[bad[0]].shape)} in the file vs {tuple(ours[bad[0]].shape)}"
            if bad
            else "no tensor name in common"
        )
        raise ValueError(
            f"--init {path} holds preset {name!r}, whose weights do not fit preset "
            f"{want!r}: {detail}; use a checkpoint of the same preset"
        )
    missing, _ = model.load_state_dict({k: theirs[k] for k in shared}, strict=False)
    log.info(
        "initialised from %s (preset %s; %d model keys not in the file, %d file keys unused)",
        path,
        name,
        len(missing),
        len(theirs) - len(shared),
    )
    return len(missing), len(theirs) - len(shared)
