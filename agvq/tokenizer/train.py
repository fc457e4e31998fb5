"""Training the MRI tokenizer through the project's one loop (agvq.training.loop.fit).

Every training sample is one location (an axial slice, or a 3D patch) with all its sequences. Each step decodes,
from the same encoder outputs and one codebook:

* reconstruction: every sequence from its own codes;
* translation: every sequence's codes rendered as another, random sequence;
* fusion: one random sequence per sample from the averaged latents of the other sequences (what filling a missing
  sequence does at inference).

The loss is the L1 error inside the brain of each kind (weights in params ``tokenizer.loss``), optionally plus
(1 - SSIM), plus the quantizer's commitment loss and an optional consistency term pulling the latents of one
location's sequences together. Validation scores reconstruction SSIM/PSNR and fused synthesis SSIM on the
validation cases; the best epoch by ``tokenizer.train.val_metric`` is kept.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from agvq.config import Params, TokenizerConfig, TokenizerLossConfig, TokenizerTrainConfig, to_dict
from agvq.io.atomic import ensure_writable, write_json
from agvq.io.model_file import model_file, save_atomic
from agvq.io.splits import read_splits
from agvq.metrics.image import psnr_per_image, ssim_per_image, ssim_separable
from agvq.tokenizer.data import TokenizerSamples, TokenizerStore, scored_slices
from agvq.tokenizer.figures import curves_figure, epochs_figure
from agvq.tokenizer.model import MRITokenizer
from agvq.tokenizer.synthesis import render_many
from agvq.training.loop import finish_run, fit
from agvq.training.run import TrainingPaths, fingerprint
from agvq.training.runtime import Runtime, setup_runtime, teardown_runtime

log = logging.getLogger(__name__)

DATA_RANGE = 1.0
"""SSIM / PSNR data range: images are on [0, 1] (agvq.tokenizer.data)."""


def build_tokenizer(cfg: TokenizerConfig, sequences) -> MRITokenizer:
    return MRITokenizer(dims=cfg.dims, sequences=list(sequences), **to_dict(cfg.model),
                        quantizer=to_dict(cfg.quantizer),
                        percentiles=(cfg.intensity.low_percentile, cfg.intensity.high_percentile))


def _slices_tensor(volume: np.ndarray) -> torch.Tensor:
    """(X, Y, n) -> (n, 1, X, Y) float32."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, -1, 0))[:, None].astype(np.float32))


def _masked_l1(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - ref).abs() * mask).sum() / mask.sum().clamp_min(1.0)


class TokenizerTask:
    """The tokenizer's part of the shared loop: its samples, loss, validation and per-epoch snapshots."""

    kind = "tokenizer"

    def __init__(self, model: MRITokenizer, loss: TokenizerLossConfig, train: TokenizerTrainConfig):
        self.model, self.loss, self.train = model, loss, train
        self.snapshots: dict[int, torch.Tensor] = {}  # validation epoch -> (C, X, Y) reconstruction of one slice
        self.snapshot_real: torch.Tensor | None = None
        self.snapshot_caption = ""

    # ------------------------------------------------------------------------------------ loop interface
    def dataset(self, store: TokenizerStore, cfg: TokenizerTrainConfig, seed: int) -> TokenizerSamples:
        return TokenizerSamples(store, self.model.dims, cfg.patch_size, cfg.samples_per_epoch, cfg.min_brain_fraction,
                                seed, cfg.flip, cfg.samples_per_case)

    def forward_loss(self, model: torch.nn.Module, batch: dict):
        x, brain = batch["image"], batch["brain"]  # (B, C, *S), (B, 1, *S)
        b, c = x.shape[:2]
        spatial = x.shape[2:]
        n, device = b * c, x.device
        src = x.reshape(n, 1, *spatial)
        seq = torch.arange(c).repeat(b)
        owner = torch.arange(b).repeat_interleave(c)
        eye = torch.eye(n)
        parts: list[tuple[str, float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if self.loss.reconstruction_weight > 0:
            parts.append(("reconstruction", self.loss.reconstruction_weight, eye, seq, owner, seq))
        if c > 1 and self.loss.translation_weight > 0:
            other = (seq + torch.randint(1, c, (n,))) % c
            parts.append(("translation", self.loss.translation_weight, eye, other, owner, other))
        if c > 1 and self.loss.fused_weight > 0:
            missing = torch.randint(0, c, (b,))
            mix = torch.zeros(b, n)
            for i in range(b):
                cols = [i * c + j for j in range(c) if j != int(missing[i])]
                mix[i, cols] = 1.0 / len(cols)
            parts.append(("fused", self.loss.fused_weight, mix, missing, torch.arange(b), missing))
        mix = torch.cat([p[2] for p in parts]).to(device)
        target = torch.cat([p[3] for p in parts]).to(device)
        rows = torch.cat([p[4] for p in parts]).to(device)
        ref_seq = torch.cat([p[5] for p in parts]).to(device)
        out_brain = brain[rows]
        out = model(src, target, out_brain, mix)
        refs = x[rows, ref_seq][:, None]
        loss = out.commitment_loss
        logs = {"commitment": out.commitment_loss.detach(), "perplexity": out.perplexity.detach(),
                "used_fraction": out.used_fraction.detach()}
        start = 0
        for name, weight, part_mix, *_ in parts:
            sl = slice(start, start + part_mix.shape[0])
            start = sl.stop
            err = _masked_l1(out.image[sl], refs[sl], out_brain[sl])
            logs[f"{name}_l1"] = err.detach()
            if self.loss.ssim_weight > 0:
                pred, ref = out.image[sl].float(), refs[sl].float()
                if pred.dim() == 4:  # slices: the separable filter (equal to torchmetrics, 5x cheaper)
                    ssim = ssim_separable(pred, ref, DATA_RANGE).mean()
                else:
                    ssim = structural_similarity_index_measure(pred, ref, data_range=DATA_RANGE)
                err = err + self.loss.ssim_weight * (1.0 - ssim)
            loss = loss + weight * err
        if self.loss.consistency_weight > 0 and c > 1:
            z = out.latent.view(b, c, *out.latent.shape[1:])
            consistency = F.mse_loss(z, z.mean(1, keepdim=True).expand_as(z))
            logs["consistency"] = consistency.detach()
            loss = loss + self.loss.consistency_weight * consistency
        return loss, logs

    @torch.no_grad()
    def validate(self, model: MRITokenizer, store: TokenizerStore, rt: Runtime, epoch: int) -> dict:
        """Mean reconstruction SSIM / PSNR and fused-synthesis SSIM over the qualifying axial slices of every
        validation case and sequence; cases are shared out over DDP ranks and the sums reduced."""
        names = store.modalities
        sums = torch.zeros(5, dtype=torch.float64)  # ssim, psnr, n, synthesis ssim, n synthesis
        for i in range(rt.rank, len(store), rt.world_size):
            case = store[i]
            zs = scored_slices(case.brain, self.train.min_brain_fraction)
            if self.train.val_slices and len(zs) > self.train.val_slices:
                zs = zs[np.linspace(0, len(zs) - 1, self.train.val_slices).round().astype(int)]
            if len(zs) == 0:
                continue
            requests = [((k,), name) for k, name in enumerate(names)]
            if len(names) > 1:
                requests += [(tuple(j for j in range(len(names)) if j != k), name) for k, name in enumerate(names)]
            rendered, _ = render_many(model, case.image, case.brain, requests, zs)
            for (sources, name), out in zip(requests, rendered):
                real = _slices_tensor(case.image[names.index(name)][..., zs])
                ssim = ssim_per_image(_slices_tensor(out), real, DATA_RANGE)
                if len(sources) == 1:
                    sums[0] += ssim.sum()
                    sums[1] += psnr_per_image(_slices_tensor(out), real, DATA_RANGE).clamp_max(100.0).sum()
                    sums[2] += len(zs)
                else:
                    sums[3] += ssim.sum()
                    sums[4] += len(zs)
        if rt.distributed:
            sums = sums.to(rt.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        if (epoch in self.train.figure_epochs or epoch == self.train.epochs) and rt.is_main:
            self._snapshot(model, store, epoch)
        scores = {"ssim": float(sums[0] / sums[2].clamp_min(1)), "psnr": float(sums[1] / sums[2].clamp_min(1))}
        if sums[4] > 0:
            scores["synthesis_ssim"] = float(sums[3] / sums[4])
        return scores

    def _snapshot(self, model: MRITokenizer, store: TokenizerStore, epoch: int) -> None:
        case = store[0]
        z = int(case.brain.reshape(-1, case.brain.shape[-1]).sum(0).argmax())
        recs, _ = render_many(model, case.image, case.brain, [((k,), n) for k, n in enumerate(store.modalities)], [z])
        recs = [r[..., 0] for r in recs]
        self.snapshots[int(epoch)] = torch.from_numpy(np.stack(recs)).half()
        self.snapshot_real = torch.from_numpy(case.image[..., z]).half()
        self.snapshot_caption = f"validation case {case.case}, axial slice {z}"

    def state_dict(self) -> dict:
        return {"snapshots": {int(k): v for k, v in self.snapshots.items()}, "real": self.snapshot_real,
                "caption": self.snapshot_caption}

    def load_state_dict(self, state: dict) -> None:
        self.snapshots = {int(k): v for k, v in state.get("snapshots", {}).items()}
        self.snapshot_real, self.snapshot_caption = state.get("real"), state.get("caption", "")


def train_tokenizer(params: Params, paths: TrainingPaths, curves_png, epochs_png) -> dict:
    """Train on the train split, keep the best validation epoch, and write the model file (kind "tokenizer", its
    contract beside it), metrics, the per-epoch curve and the two training figures. Returns the metrics."""
    cfg = params.tokenizer
    rt = setup_runtime(params.runtime, cfg.seed)
    try:
        if rt.is_main:
            ensure_writable([paths.model, paths.metrics, paths.curve, paths.run_dir / "last.pt", curves_png,
                             epochs_png])
        splits = read_splits(paths.splits, need=("train", "val"))
        percentiles = (cfg.intensity.low_percentile, cfg.intensity.high_percentile)
        train = TokenizerStore(paths.prepared, splits["train"], percentiles, cache=cfg.train.cache)
        val = TokenizerStore(paths.prepared, splits["val"], percentiles, cache=cfg.train.cache)
        model = build_tokenizer(cfg, train.modalities)
        task = TokenizerTask(model, cfg.loss, cfg.train)
        identity = {"stage": "tokenizer", "params": {k: v for k, v in to_dict(cfg).items() if k != "evaluate"},
                    "runtime": to_dict(params.runtime)}
        result = fit(task, train, val, cfg.train, None, rt, paths.run_dir, paths.curve if rt.is_main else None,
                     cfg.seed, fingerprint(paths, identity), "tokenizer")
        metrics: dict = {}
        if rt.is_main:
            model.load_state_dict(result.best_state)
            metrics = {"best_epoch": result.best_epoch,
                       **{k: v for k, v in result.best_metrics.items() if k != "epoch"},
                       "train_cases": len(train), "val_cases": len(val)}
            contract = {"kind": "tokenizer", "modalities": train.modalities, "dims": cfg.dims,
                        "patch_size": list(cfg.train.patch_size), "percentiles": list(percentiles),
                        "data_range": DATA_RANGE, "stride": model.stride,
                        "num_embeddings": cfg.model.num_embeddings, "train_seconds": round(result.seconds, 2)}
            save_atomic(model_file("tokenizer", model.cpu(), contract, metrics), paths.model)
            write_json(paths.model.with_suffix(".json"), contract)
            write_json(paths.metrics, metrics)
            curves_figure(result.history, curves_png)
            if task.snapshots and task.snapshot_real is not None:
                epochs_figure(task.snapshot_real.float().numpy(),
                              {e: v.float().numpy() for e, v in task.snapshots.items()}, train.modalities,
                              task.snapshot_caption, epochs_png)
            log.info("tokenizer: best epoch %d, %s", result.best_epoch,
                     ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
        rt.barrier()
        finish_run(paths.run_dir, rt)
        return metrics
    finally:
        teardown_runtime(rt)
