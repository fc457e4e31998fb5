"""Stage-1 quality on held-out cases: masks through encoder, quantizer and decoder (reconstruction Dice/HD95) and
how much of the codebook the region's shapes use (fraction of codes, perplexity)."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from agvq.data.dataset import CaseStore
from agvq.config import InferConfig
from agvq.inference.predictors import VQVAEReconstructor, predict_region
from agvq.metrics.segmentation import region_metrics


@torch.inference_mode()
def reconstruction_report(vqvae: torch.nn.Module, store: CaseStore, patch_size, protocol: InferConfig,
                          empty_penalty: float) -> dict:
    """Per-case reconstruction metrics of ``store``'s region masks (predicted by ``protocol``, the one of inference
    and validation) plus codebook usage over all their codes."""
    vqvae.eval()
    reconstructor = VQVAEReconstructor(vqvae)
    counts = torch.zeros(vqvae.quantizer.num_embeddings, dtype=torch.float64)
    rows = []
    for i in tqdm(range(len(store)), desc="reconstruct", unit="case", mininterval=2.0):
        case = store[i]
        mask = torch.from_numpy(case.mask[None, None].astype(np.float32))
        pred = predict_region(reconstructor, mask, patch_size, case.brain, protocol)
        scores = region_metrics(pred, case.mask.astype(bool), case.spacing, empty_penalty)
        rows.append({"case": case.case, "dice": scores["dice"], "hd95": scores["hd95"],
                     "convention": scores["convention"]})
        codes = vqvae.encode_indices(mask)
        counts += torch.bincount(codes.reshape(-1), minlength=counts.numel()).double()
    p = counts / counts.sum()
    nonzero = p[p > 0]
    dice = np.array([r["dice"] for r in rows])
    hd95 = np.array([r["hd95"] for r in rows])
    return {
        "cases": len(rows),
        "dice": float(dice.mean()), "dice_median": float(np.median(dice)), "dice_min": float(dice.min()),
        "hd95": float(hd95.mean()),
        "both_empty": sum(r["convention"] == "both_empty" for r in rows),
        "one_empty": sum(r["convention"] in ("pred_empty", "truth_empty") for r in rows),
        "used_codes": int((counts > 0).sum()), "num_embeddings": int(counts.numel()),
        "used_fraction": float((counts > 0).double().mean()),
        "perplexity": float(torch.exp(-(nonzero * nonzero.log()).sum())),
        "per_case": rows,
    }
