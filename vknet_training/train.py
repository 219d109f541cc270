"""Train Video K-Net on key/reference frame pairs (video_knet.md §5, §6), single process or DDP.

    python training/train.py --preset tiny --data data/synthetic --out runs/tiny --iters 200
    torchrun --nproc_per_node=2 training/train.py --preset tiny --data data/synthetic --out runs/t
    python training/train.py ... --resume runs/tiny          # continue from runs/tiny/last.pt

Per iteration and image: the reference frame runs first from the zero state, the key frame runs
with the reference frame's kernels as its previous kernels (kernel linking), and
``VideoKNetCriterion`` computes the segmentation losses of both frames plus the tracking losses.
Optimiser and schedule: ``optim.py``; batch order: ``batches.py``. ``--batch-size`` is the
global batch, split evenly over the ranks; the logged losses are rank averages, so one process
with batch B and K processes with B/K each log the same values.

Everything is checked before anything is written (preset, data, ``--init``, ``--resume``, the
first training pair); only then ``--out`` gets ``train_config.json``. Written into ``--out``:
``last.pt`` (+ ``last.state.pt``) every ``--ckpt-every`` iterations, ``model_final.pt``,
``metrics.jsonl``, TensorBoard scalars in ``tb/``, ``curves.png``. A run that fails before its
first checkpoint removes the run folder it created; after that the folder stays (resumable).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

import vknet_core
from vknet_core.atomic import write_text_atomic
from vknet_core.checkpoint import save_checkpoint
from vknet_core.cli import run_cli
from vknet_core.config import VKNetConfig
from vknet_core.losses import VideoKNetCriterion
from vknet_training.batches import batch_stream, check_enough_items
from vknet_training.checkpointing import (
    load_init_weights,
    load_training_state,
    resolve_resume,
    save_training_state,
)
from vknet_training.datasets import PairDataset, VideoReader, build_reader
from vknet_training.dist import DistContext, init_distributed
from vknet_training.optim import (
    amp_context,
    build_optimizer,
    build_scheduler,
    lr_factor,
    set_lr_for_step,
)
from vknet_training.scalar_log import ScalarLog
from vknet_training.train_config import TrainConfig, check_config, parse_args

log = logging.getLogger("vknet_training.train")

__all__ = ["PairModel", "TrainConfig", "lr_factor", "main", "parse_args", "train"]


def model_config(cfg: TrainConfig) -> VKNetConfig:
    """The preset, with ``--norm-eval`` applied (BatchNorm freezing lives in the backbone)."""
    mcfg = vknet_core.get_preset(cfg.preset)
    if cfg.norm_eval is not None:
        mcfg = replace(mcfg, backbone=replace(mcfg.backbone, norm_eval=cfg.norm_eval))
    return mcfg


class PairModel(torch.nn.Module):
    """One ``forward`` for a key/reference pair (so that DDP sees one forward per backward).

    The reference frame runs from the zero state, then the key frame with the reference frame's
    kernels as its previous kernels (kernel linking, video_knet.md §4.1).
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image_key: torch.Tensor, image_ref: torch.Tensor):
        """image_key, image_ref [B,3,H,W] -> (key TrainOutputs, reference TrainOutputs)."""
        B = image_key.shape[0]
        out_ref = self.net.forward_train(image_ref, *self.net.initial_state(B))
        ones = torch.ones(B, device=image_key.device, dtype=out_ref.frame.cur_kernels.dtype)
        out_key = self.net.forward_train(image_key, out_ref.frame.cur_kernels, ones)
        return out_key, out_ref


@dataclass
class TrainRun:
    """Everything a run needs, built and checked before anything is written."""

    cfg: TrainConfig
    ctx: DistContext
    mcfg: VKNetConfig
    net: torch.nn.Module  # the VideoKNet (weights, checkpoints)
    model: torch.nn.Module  # PairModel, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    autocast: Any
    criterion: VideoKNetCriterion
    dataset: PairDataset
    val_reader: Optional[VideoReader]
    start: int
    per_rank: int


def prepare(cfg: TrainConfig, ctx: DistContext) -> TrainRun:
    """Build model, optimiser and data, load ``--init``/``--resume``; writes nothing.

    Raises ``ValueError``/``FileNotFoundError`` (one clear line) for a wrong preset, a missing or
    corrupt dataset or checkpoint, or a checkpoint of another preset.
    """
    check_config(cfg)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(
            f"--batch-size {cfg.batch_size} must be a multiple of the number of "
            f"processes ({ctx.world_size})"
        )
    if cfg.resume is not None:
        resolve_resume(cfg.resume)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    mcfg = model_config(cfg)
    net = vknet_core.build_model(mcfg)
    if cfg.init is not None:
        load_init_weights(net, cfg.init)
    net = net.to(ctx.device).train()
    if ctx.distributed and ctx.device.type == "cuda" and not mcfg.backbone.norm_eval:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)  # frozen BN needs no sync
    model: torch.nn.Module = PairModel(net)
    if ctx.distributed:
        model = DistributedDataParallel(
            model,
            device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=False,
        )  # every parameter is in the graph of a pair
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    autocast, scaler = amp_context(ctx.device, cfg.amp)
    start = 0
    if cfg.resume is not None:
        start = load_training_state(cfg.resume, net, optimizer, scheduler, scaler)
        set_lr_for_step(optimizer, scheduler, start, cfg)
        if start >= cfg.iters:
            log.info("checkpoint is at step %d >= --iters %d: nothing to train", start, cfg.iters)

    per_rank = cfg.batch_size // ctx.world_size
    reader = build_reader(mcfg.labels.dataset, cfg.data, cfg.split)
    dataset = PairDataset(reader, mcfg, crop=cfg.crop, scale=cfg.scale, train=True, seed=cfg.seed)
    check_enough_items(len(dataset), ctx, per_rank)
    _ = dataset[0]  # read one pair now: unreadable images or labels fail before --out is touched
    val_reader = (
        build_reader(mcfg.labels.dataset, cfg.val_data, cfg.val_split)
        if cfg.val_data is not None
        else None
    )
    criterion = VideoKNetCriterion(mcfg, cfg.loss, reduce_mean=ctx.mean)
    return TrainRun(
        cfg,
        ctx,
        mcfg,
        net,
        model,
        optimizer,
        scheduler,
        scaler,
        autocast,
        criterion,
        dataset,
        val_reader,
        start,
        per_rank,
    )


def train_step(run: TrainRun, batch: dict[str, Any], step: int) -> dict[str, float]:
    """One optimiser step on one batch; returns the rank-averaged scalars to log."""
    ctx, net, optimizer, scaler = run.ctx, run.net, run.optimizer, run.scaler
    img_k = batch["image_key"].to(ctx.device, non_blocking=True)
    img_r = batch["image_ref"].to(ctx.device, non_blocking=True)
    with run.autocast:
        out_key, out_ref = run.model(img_k, img_r)
    losses = run.criterion(out_key, out_ref, batch["targets_key"], batch["targets_ref"])
    loss = sum(losses.values())
    names = sorted(losses)
    vals = ctx.mean(torch.stack([losses[k].detach().float() for k in names]))
    total = float(vals.sum())
    if not math.isfinite(total):
        raise FloatingPointError(
            f"non-finite loss at step {step}: "
            + ", ".join(f"{k}={float(v):.4g}" for k, v in zip(names, vals))
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), run.cfg.clip_grad)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    lr = optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    return {
        "loss": total,
        "lr": lr,
        "grad_norm": float(grad_norm),
        **{k: float(v) for k, v in zip(names, vals)},
    }


@contextlib.contextmanager
def run_folder(out: Path, is_main: bool) -> Iterator[Path]:
    """Create ``out`` (main rank); if the run fails before its first checkpoint, remove the
    folders this call created. A folder with ``last.pt`` stays: it can be resumed."""
    first_new = None
    for p in [out, *out.parents]:
        if p.exists():
            break
        first_new = p
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        if is_main and first_new is not None and not (out / "last.pt").exists():
            shutil.rmtree(first_new, ignore_errors=True)
        raise


def train(cfg: TrainConfig) -> Path:
    """Check everything, then run the training loop; returns the path of ``model_final.pt``."""
    ctx = init_distributed(cfg.device)
    try:
        if not ctx.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        run = prepare(cfg, ctx)
        with run_folder(Path(cfg.out), ctx.is_main) as out:
            if ctx.is_main:
                write_text_atomic(
                    out / "train_config.json", json.dumps(cfg.to_json_dict(), indent=1) + "\n"
                )
            return _loop(run, out)
    finally:
        ctx.close()


def _loop(run: TrainRun, out: Path) -> Path:
    cfg, ctx, net = run.cfg, run.ctx, run.net
    logger = ScalarLog(out, ctx.is_main, append=run.start > 0)
    log.info(
        "training %s on %d key frames of %s (%s), %d iterations, global batch %d on %d "
        "process(es), device %s",
        run.mcfg.name,
        len(run.dataset),
        cfg.data,
        cfg.split,
        cfg.iters,
        cfg.batch_size,
        ctx.world_size,
        ctx.device,
    )
    extra = {"train_config": cfg.to_json_dict()}

    def validate(step: int) -> None:
        if run.val_reader is not None and ctx.is_main:
            from vknet_training.validate import validate_model

            scores = validate_model(
                net, run.val_reader, str(ctx.device), max_sequences=cfg.val_max_sequences
            )
            logger.write(step, scores, kind="val")
        ctx.barrier()

    stream = batch_stream(run.dataset, ctx, run.per_rank, cfg.seed, run.start, cfg.workers)
    bar = None
    if ctx.is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.iters, initial=run.start, desc="train", dynamic_ncols=True, file=sys.stderr
        )
    t_start = t_log = time.perf_counter()
    step = last_log = run.start
    try:
        while step < cfg.iters:
            scalars = train_step(run, next(stream), step)
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{scalars['lr']:.2e}")
            if step % cfg.log_every == 0 or step == cfg.iters or step == run.start + 1:
                now = time.perf_counter()
                scalars["time_per_iter"] = (now - t_log) / (step - last_log)
                t_log, last_log = now, step
                logger.write(step, scalars)
            if cfg.val_every and step % cfg.val_every == 0 and step < cfg.iters:
                validate(step)
            if step % cfg.ckpt_every == 0 or step == cfg.iters:
                if ctx.is_main:
                    save_training_state(
                        out / "last.pt", net, run.optimizer, run.scheduler, run.scaler, step, extra
                    )
                ctx.barrier()
    finally:
        if bar is not None:
            bar.close()
    train_s = time.perf_counter() - t_start
    validate(step)
    final = out / "model_final.pt"
    if ctx.is_main:
        save_checkpoint(net, final, extra={"step": step, "train_seconds": train_s, **extra})
        logger.close()
        try:
            from vknet_training.plot_curves import plot_curves

            plot_curves(out / "metrics.jsonl", out / "curves.png")
        except Exception as e:  # a plot must never fail a finished training
            log.warning("could not plot curves: %s", e)
        log.info("done: %d iterations in %.1f s -> %s", step - run.start, train_s, final)
    ctx.barrier()
    return final


# ----------------------------------------------------------------------------- CLI


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_args(argv, description=__doc__.split("\n\n")[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    def body() -> int:
        final = train(cfg)
        log.info("final model: %s", final)  # logged by the main rank only
        return 0

    return run_cli("train.py", body)


if __name__ == "__main__":
    raise SystemExit(main())
