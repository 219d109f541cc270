"""Train Video K-Net on key/reference frame pairs (video_knet.md §5, §6), single process or DDP.

    python training/train.py --preset tiny --data data/synthetic --out runs/tiny
    torchrun --nproc_per_node=2 training/train.py --preset tiny --data data/synthetic --out runs/t
    python training/train.py ... --resume runs/tiny          # continue from runs/tiny/last.pt

Per iteration and image: the reference frame runs first from the zero state, the key frame runs
with the reference frame's kernels as its previous kernels (kernel linking), and
``VideoKNetCriterion`` computes the segmentation losses of both frames plus the tracking losses.
AdamW (lr 1e-4, wd 0.05, backbone lr x0.25), gradient clipping (L2 1.0), linear warm-up then
step decay (x0.1 at 9/12 and 11/12 of the iterations), AMP on CUDA (bf16, or fp16 with a grad
scaler), gloo/nccl DDP with a DistributedSampler. ``--batch-size`` is the global batch, split
evenly over the ranks; the logged losses are rank averages, so one process with batch B and
K processes with B/K each log the same values.

Writes into ``--out``: ``last.pt`` (+ ``last.state.pt``) every ``--ckpt-every`` iterations,
``model_final.pt`` (weights + config, no optimiser state), ``metrics.jsonl`` (one line per
logged step and per validation), TensorBoard scalars in ``tb/``, ``curves.png`` and
``train_config.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

import vknet_core
from vknet_core.checkpoint import save_checkpoint
from vknet_core.config import VKNetConfig
from vknet_core.losses import LossConfig, VideoKNetCriterion
from vknet_training.checkpointing import load_training_state, save_training_state
from vknet_training.datasets import PairDataset, build_reader, collate_pairs
from vknet_training.dist import DistContext, init_distributed

log = logging.getLogger("vknet_training.train")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run depends on (written to ``OUT/train_config.json``)."""

    preset: str
    data: Path
    out: Path
    iters: int = 20000
    batch_size: int = 2  # global: split evenly over the ranks
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.25
    clip_grad: float = 1.0
    warmup_iters: int = 1000
    warmup_ratio: float = 1e-3
    decay_at: tuple[float, ...] = (9 / 12, 11 / 12)  # fractions of iters (epochs 9, 11 of 12)
    decay_gamma: float = 0.1
    crop: tuple[int, int] = (384, 1248)
    scale: tuple[float, float] = (0.5, 2.0)
    split: str = "train"
    val_data: Optional[Path] = None
    val_split: str = "val"
    val_every: int = 0  # 0: validate only at the end (when --val-data is given)
    val_max_sequences: Optional[int] = None
    ckpt_every: int = 1000
    log_every: int = 10
    resume: Optional[Path] = None
    init: Optional[Path] = None  # initialise weights from a vknet checkpoint (fine-tuning)
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    threads: Optional[int] = None  # torch CPU threads per process (None: torch's default)
    amp: bool = True  # CUDA only
    norm_eval: Optional[bool] = None  # override the preset's BatchNorm mode
    progress: bool = True
    loss: LossConfig = field(default_factory=LossConfig)


# ----------------------------------------------------------------------------- pieces


def model_config(cfg: TrainConfig) -> VKNetConfig:
    mcfg = vknet_core.get_preset(cfg.preset)
    if cfg.norm_eval is not None:
        mcfg = replace(mcfg, backbone=replace(mcfg.backbone, norm_eval=cfg.norm_eval))
    return mcfg


def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Put every BatchNorm in eval mode (statistics frozen; affine parameters still train)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from ``warmup_ratio`` to 1 (mmcv), then x``decay_gamma`` per passed step."""
    f = 1.0
    if step < cfg.warmup_iters:
        f = 1.0 - (1.0 - cfg.warmup_ratio) * (1.0 - step / cfg.warmup_iters)
    passed = sum(step >= int(round(a * cfg.iters)) for a in cfg.decay_at)
    return f * cfg.decay_gamma ** passed


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the backbone at ``lr * backbone_lr_mult`` (official paramwise_cfg)."""
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("backbone.") else rest).append(p)
    groups = [{"params": rest, "lr": cfg.lr},
              {"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr,
                             weight_decay=cfg.weight_decay)


def epoch_batches(num_items: int, epoch: int, ctx: DistContext, per_rank: int,
                  seed: int) -> list[list[int]]:
    """This rank's batches of one epoch: DistributedSampler(shuffle, drop_last) order, chunked.

    Global batch b of the epoch is ``perm[b*B : (b+1)*B]`` of the sampler's permutation, and
    rank r takes its r-th slice, so the union over ranks never depends on the world size.
    """
    sampler = DistributedSampler(range(num_items), num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)  # perm[rank::world]
    return [idx[i: i + per_rank] for i in range(0, len(idx) - per_rank + 1, per_rank)]


def batch_stream(dataset: PairDataset, ctx: DistContext, per_rank: int, seed: int,
                 start_step: int, workers: int) -> Iterator[dict[str, Any]]:
    """Endless batches from iteration ``start_step`` on (deterministic, resumable)."""
    steps_per_epoch = len(epoch_batches(len(dataset), 0, ctx, per_rank, seed))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} key frames are too few for a global batch of "
                         f"{per_rank * ctx.world_size}")
    epoch, skip = divmod(start_step, steps_per_epoch)
    while True:
        dataset.set_epoch(epoch)
        batches = epoch_batches(len(dataset), epoch, ctx, per_rank, seed)[skip:]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_pairs,
                            num_workers=workers, persistent_workers=False)
        yield from loader
        epoch, skip = epoch + 1, 0


class PairModel(torch.nn.Module):
    """One ``forward`` for a key/reference pair (so that DDP sees one forward per backward).

    The reference frame runs from the zero state, then the key frame with the reference frame's
    kernels as its previous kernels (kernel linking, video_knet.md §4.1).
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image_key: torch.Tensor, image_ref: torch.Tensor):
        B = image_key.shape[0]
        out_ref = self.net.forward_train(image_ref, *self.net.initial_state(B))
        ones = torch.ones(B, device=image_key.device, dtype=out_ref.frame.cur_kernels.dtype)
        out_key = self.net.forward_train(image_key, out_ref.frame.cur_kernels, ones)
        return out_key, out_ref


def amp_context(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


class ScalarLog:
    """metrics.jsonl + TensorBoard, main rank only."""

    def __init__(self, out: Path, enabled: bool, append: bool):
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.path = out / "metrics.jsonl"
        if not append and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except Exception as e:  # tensorboard missing or broken: keep the JSON log
            log.warning("TensorBoard disabled: %s", e)

    def write(self, step: int, scalars: dict[str, float], kind: str = "train") -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"kind": kind, "step": step, **scalars}) + "\n")
        if self.tb is not None:
            for k, v in scalars.items():
                if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- train


def train(cfg: TrainConfig) -> Path:
    """Run the training loop; returns the path of ``model_final.pt``."""
    ctx = init_distributed(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        ctx.close()


def _train(cfg: TrainConfig, ctx: DistContext) -> Path:
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"--batch-size {cfg.batch_size} must be a multiple of the number of "
                         f"processes ({ctx.world_size})")
    if cfg.iters < 1:
        raise ValueError(f"--iters must be >= 1, got {cfg.iters}")
    per_rank = cfg.batch_size // ctx.world_size
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    out = Path(cfg.out)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), default=str, indent=1))
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    mcfg = model_config(cfg)
    net = vknet_core.build_model(mcfg)
    if cfg.init is not None:
        init = vknet_core.load_checkpoint(cfg.init)
        missing, unexpected = net.load_state_dict(init.state_dict(), strict=False)
        log.info("initialised from %s (missing %d, unexpected %d keys)", cfg.init,
                 len(missing), len(unexpected))
    net = net.to(ctx.device).train()
    if ctx.distributed and ctx.device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    model: torch.nn.Module = PairModel(net)
    if ctx.distributed:
        model = DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=False)  # every parameter is in the graph of a pair
    optimizer = build_optimizer(net, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    autocast, scaler = amp_context(ctx.device, cfg.amp)
    criterion = VideoKNetCriterion(mcfg, cfg.loss, reduce_mean=ctx.mean)

    start = 0
    if cfg.resume is not None:
        start = load_training_state(cfg.resume, net, optimizer, scheduler, scaler)
        # The schedule is a function of (step, this config): a resumed run may change --iters.
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * lr_factor(start, cfg)
        if start >= cfg.iters:
            log.info("checkpoint is at step %d >= --iters %d: nothing to train", start, cfg.iters)

    reader = build_reader(mcfg.labels.dataset, cfg.data, cfg.split)
    dataset = PairDataset(reader, mcfg, crop=cfg.crop, scale=cfg.scale, train=True,
                          seed=cfg.seed)
    val_reader = (build_reader(mcfg.labels.dataset, cfg.val_data, cfg.val_split)
                  if cfg.val_data is not None else None)
    logger = ScalarLog(out, ctx.is_main, append=start > 0)
    log.info("training %s on %d key frames of %s (%s), %d iterations, global batch %d on %d "
             "process(es), device %s", mcfg.name, len(dataset), cfg.data, cfg.split, cfg.iters,
             cfg.batch_size, ctx.world_size, ctx.device)

    def validate(step: int) -> None:
        if val_reader is not None and ctx.is_main:
            from vknet_training.validate import evaluate_model

            scores = evaluate_model(net, val_reader, str(ctx.device),
                                    max_sequences=cfg.val_max_sequences)
            logger.write(step, scores, kind="val")
        ctx.barrier()

    def checkpoint(step: int) -> None:
        if ctx.is_main:
            save_training_state(out / "last.pt", net, optimizer, scheduler, scaler, step,
                                {"train_config": json.loads(json.dumps(asdict(cfg),
                                                                       default=str))})
        ctx.barrier()

    stream = batch_stream(dataset, ctx, per_rank, cfg.seed, start, cfg.workers)
    bar = None
    if ctx.is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.iters, initial=start, desc="train", dynamic_ncols=True,
                   file=sys.stderr)
    t_start = t_log = time.perf_counter()
    step = last_log = start
    while step < cfg.iters:
        batch = next(stream)
        if cfg.norm_eval:  # every backbone type, also after validation switched modes
            freeze_batchnorm(net)
        img_k = batch["image_key"].to(ctx.device, non_blocking=True)
        img_r = batch["image_ref"].to(ctx.device, non_blocking=True)
        with autocast:
            out_key, out_ref = model(img_k, img_r)
        losses = criterion(out_key, out_ref, batch["targets_key"], batch["targets_ref"])
        loss = sum(losses.values())
        names = sorted(losses)
        vals = ctx.mean(torch.stack([losses[k].detach().float() for k in names]))
        total = float(vals.sum())
        if not math.isfinite(total):
            raise FloatingPointError(
                f"non-finite loss at step {step}: "
                + ", ".join(f"{k}={float(v):.4g}" for k, v in zip(names, vals)))
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}", lr=f"{lr:.2e}")
        if step % cfg.log_every == 0 or step == cfg.iters or step == start + 1:
            now = time.perf_counter()
            scalars = {"loss": total, "lr": lr, "grad_norm": float(grad_norm),
                       "time_per_iter": (now - t_log) / (step - last_log),
                       **{k: float(v) for k, v in zip(names, vals)}}
            t_log, last_log = now, step
            logger.write(step, scalars)
        if cfg.val_every and step % cfg.val_every == 0 and step < cfg.iters:
            validate(step)
        if step % cfg.ckpt_every == 0 or step == cfg.iters:
            checkpoint(step)
    if bar is not None:
        bar.close()
    train_s = time.perf_counter() - t_start
    validate(step)
    final = out / "model_final.pt"
    if ctx.is_main:
        save_checkpoint(net, final, extra={"step": step, "train_seconds": train_s,
                                           "train_config": json.loads(json.dumps(
                                               asdict(cfg), default=str))})
        logger.close()
        try:
            from vknet_training.plot_curves import plot_curves

            plot_curves(out / "metrics.jsonl", out / "curves.png")
        except Exception as e:  # a plot must never fail a finished training
            log.warning("could not plot curves: %s", e)
        log.info("done: %d iterations in %.1f s -> %s", step - start, train_s, final)
    ctx.barrier()
    return final


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None) -> TrainConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_argument_group("run")
    g.add_argument("--preset", required=True, help="model preset (vknet_core.config.PRESETS)")
    g.add_argument("--data", type=Path, required=True, help="dataset root (KITTI-STEP layout)")
    g.add_argument("--out", type=Path, required=True, help="run folder for checkpoints and logs")
    g.add_argument("--split", default="train", help="training split folder (default train)")
    g.add_argument("--resume", type=Path, help="run folder or last.pt to continue from")
    g.add_argument("--init", type=Path, help="vknet checkpoint to initialise the weights from")
    g.add_argument("--seed", type=int, default=0, help="seed of weights, data order and "
                   "augmentation (default 0)")
    g.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto)")
    g.add_argument("--workers", type=int, default=2, help="data loader workers (default 2)")
    g.add_argument("--threads", type=int, help="torch CPU threads per process (1 is fastest "
                   "on a busy machine; default: torch's choice)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--iters", type=int, default=20000, help="iterations (default 20000)")
    g.add_argument("--batch-size", type=int, default=2, help="global batch (default 2)")
    g.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    g.add_argument("--weight-decay", type=float, default=0.05, help="default 0.05")
    g.add_argument("--warmup-iters", type=int, default=1000, help="default 1000")
    g.add_argument("--decay-at", type=float, nargs="*", default=[9 / 12, 11 / 12],
                   help="LR x0.1 at these fractions of --iters (default 0.75 0.9167)")
    g.add_argument("--clip-grad", type=float, default=1.0, help="gradient L2 clip (default 1)")
    g.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    g.add_argument("--norm-eval", choices=("on", "off"),
                   help="freeze all BatchNorm statistics (on) or let the preset's BatchNorm "
                   "train (off); default: preset. Without a GPU, DDP has no SyncBatchNorm: "
                   "use 'on' for results independent of the number of processes")
    g = p.add_argument_group("data")
    g.add_argument("--crop", type=int, nargs=2, default=[384, 1248], metavar=("H", "W"),
                   help="training crop (default 384 1248)")
    g.add_argument("--scale", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"),
                   help="random resize range (default 0.5 2.0)")
    g = p.add_argument_group("validation and logging")
    g.add_argument("--val-data", type=Path, help="dataset root to validate on (STQ, VPQ)")
    g.add_argument("--val-split", default="val", help="validation split (default val)")
    g.add_argument("--val-every", type=int, default=0,
                   help="validate every N iterations (default 0: only at the end)")
    g.add_argument("--val-max-sequences", type=int, help="validate on the first N sequences")
    g.add_argument("--ckpt-every", type=int, default=1000, help="default 1000")
    g.add_argument("--log-every", type=int, default=10, help="default 10")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    a = p.parse_args(argv)
    return TrainConfig(
        preset=a.preset, data=a.data, out=a.out, iters=a.iters, batch_size=a.batch_size,
        lr=a.lr, weight_decay=a.weight_decay, clip_grad=a.clip_grad,
        warmup_iters=a.warmup_iters, decay_at=tuple(a.decay_at), crop=tuple(a.crop),
        scale=tuple(a.scale), split=a.split, val_data=a.val_data, val_split=a.val_split,
        val_every=a.val_every, val_max_sequences=a.val_max_sequences,
        ckpt_every=a.ckpt_every, log_every=a.log_every, resume=a.resume, init=a.init,
        seed=a.seed, device=a.device, workers=a.workers, threads=a.threads,
        amp=not a.no_amp,
        norm_eval=None if a.norm_eval is None else a.norm_eval == "on",
        progress=not a.no_progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    final = train(cfg)
    log.info("final model: %s", final)  # logged by the main rank only
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
