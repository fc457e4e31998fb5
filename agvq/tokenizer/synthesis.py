"""Rendering sequences with a trained tokenizer: reconstruction (a sequence from itself), synthesis (a sequence from
one or several others through the common codebook), and filling a case's missing sequence before segmentation.

Everything works on whole cropped volumes (C, X, Y, Z) on the [0, 1] scale of agvq.tokenizer.data; a 2D tokenizer
renders the requested axial (last-axis) slices in batches, a 3D one the whole volume in one pass.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from agvq.errors import CaseError, ConfigError
from agvq.tokenizer.data import to_unit_range, to_zscore
from agvq.tokenizer.model import MRITokenizer

SLICES_PER_PASS = 32
"""Axial slices a 2D tokenizer renders per forward pass (memory only: the output does not depend on it)."""


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


Request = tuple[Sequence[int], str]
"""(channels of the image to render from, the sequence to render): one channel reconstructs or translates it,
several are fused (their latents averaged before quantization)."""


def _chunks(zs: np.ndarray, dims: int):
    if dims == 3:
        yield zs, True
        return
    for lo in range(0, len(zs), SLICES_PER_PASS):
        yield zs[lo:lo + SLICES_PER_PASS], False


@torch.inference_mode()
def render_many(model: MRITokenizer, images: np.ndarray, brain: np.ndarray, requests: Sequence[Request],
                slices: Sequence[int] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Every request rendered from the images (C, X, Y, Z) on [0, 1], encoding each channel once.

    Returns (one (X, Y, n) float32 array per request over the axial ``slices`` (default: all), 0 outside ``brain``;
    the code histogram (C, num_embeddings) of each channel's own codes over those slices). A 2D tokenizer works
    slice by slice in batches, a 3D one on the whole volume.
    """
    model.eval()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be (C, X, Y, Z), got shape {images.shape}")
    brain = np.asarray(brain, dtype=bool)
    zs = np.arange(images.shape[-1]) if slices is None else np.asarray(slices, dtype=int)
    device = _device(model)
    targets = [model.sequence_index(t, device) for _, t in requests]
    c = images.shape[0]
    outputs = [np.zeros(images.shape[1:3] + (len(zs),), dtype=np.float32) for _ in requests]
    counts = torch.zeros(c, model.quantizer.num_embeddings, dtype=torch.float64)
    done = 0
    for part, whole in _chunks(zs, model.dims):
        if whole:  # (C, 1, X, Y, Z) and the brain (1, 1, X, Y, Z)
            x = torch.from_numpy(images[:, None]).to(device)
            b = torch.from_numpy(brain[None, None].astype(np.float32)).to(device)
        else:  # (C * n, 1, X, Y) and (n, 1, X, Y)
            x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(images[..., part], -1, 1))).to(device)
            x = x.reshape(-1, 1, *x.shape[2:])
            b = torch.from_numpy(np.ascontiguousarray(np.moveaxis(brain[..., part], -1, 0))[:, None]
                                 .astype(np.float32)).to(device)
        size = x.shape[2:]
        z = model.encode(x)
        z = z.view(c, -1, *z.shape[1:])  # (C, n, D, *latent)
        for k in range(c):
            idx = model.quantizer.quantize_indices(z[k])
            counts[k] += torch.bincount(idx.reshape(-1).cpu(), minlength=counts.shape[1]).double()
        for out, (sources, _), tgt in zip(outputs, requests, targets):
            q, _ = model.quantize_frozen(z[list(sources)].mean(0))
            y = model.decode(q, tgt.expand(q.shape[0]), size, b)[:, 0].float().cpu().numpy()
            if whole:
                out[...] = y[0][..., zs]
            else:
                out[..., done:done + len(part)] = np.moveaxis(y, 0, -1)
        done += len(part)
    return outputs, counts.numpy()


def render(model: MRITokenizer, sources: np.ndarray, target: str, brain: np.ndarray,
           slices: Sequence[int] | None = None) -> np.ndarray:
    """Sequence ``target`` rendered from all of ``sources`` (K, X, Y, Z) on [0, 1] together (K = 1: reconstruction
    or translation); (X, Y, len(slices)) float32, 0 outside ``brain``."""
    sources = np.asarray(sources, dtype=np.float32)
    outputs, _ = render_many(model, sources, brain, [(tuple(range(sources.shape[0])), target)], slices)
    return outputs[0]


def synthesize_missing(image_channels: np.ndarray, available: Sequence[str], missing: Sequence[str],
                       tokenizer: MRITokenizer, brain: np.ndarray, order: Sequence[str] | None = None) -> np.ndarray:
    """Fill the ``missing`` sequences of one prepared case with the tokenizer's synthesis from all ``available``.

    ``image_channels`` (len(available), X, Y, Z) are z-scored over the brain (the prepared scale, channels in the
    order of ``available``); each synthesized sequence is rendered from the available ones together on the
    tokenizer's [0, 1] scale and z-scored over ``brain`` like a real one. Returns (len(order), X, Y, Z) float32 in
    ``order`` (default: ``available`` then ``missing``). ConfigError when the tokenizer was not trained on a
    sequence involved or nothing is available.
    """
    available, missing = list(available), list(missing)
    order = available + missing if order is None else list(order)
    image_channels = np.asarray(image_channels, dtype=np.float32)
    if image_channels.ndim != 4 or image_channels.shape[0] != len(available):
        raise ValueError(f"image_channels must be (len(available)={len(available)}, X, Y, Z), got shape "
                         f"{image_channels.shape}")
    if not available:
        raise ConfigError("no sequence is available to synthesize the missing ones from")
    if sorted(order) != sorted(available + missing) or set(available) & set(missing):
        raise ConfigError(f"order {order} must list the available {available} and missing {missing} sequences "
                          "once each")
    unknown = sorted(set(available + missing) - set(tokenizer.sequences))
    if unknown:
        raise ConfigError(f"the tokenizer was trained on {tokenizer.sequences}; it cannot use or render {unknown}")
    brain = np.asarray(brain, dtype=bool)
    unit = to_unit_range(image_channels, brain, tokenizer.percentiles)
    channels = {name: image_channels[i] for i, name in enumerate(available)}
    everything = tuple(range(len(available)))
    rendered, _ = render_many(tokenizer, unit, brain, [(everything, name) for name in missing])
    for name, synthesized in zip(missing, rendered):
        channels[name] = to_zscore(synthesized[None], brain)[0]
    return np.stack([channels[name] for name in order]).astype(np.float32)


def prepare_with_synthesis(case_files, modalities: Sequence[str], margin: int, stride: int,
                           tokenizer: MRITokenizer) -> tuple[dict, dict]:
    """``agvq.data.preprocess.prepare_case`` (labels not read) for a case that may lack some modality files: the
    modalities present are validated and prepared (crop to their brain, z-score), the missing ones synthesized
    from them by ``tokenizer``. Returns (arrays with "image" in ``modalities`` order and "brain", properties with
    "synthesized" listing the filled modalities)."""
    import dataclasses

    from agvq.data.preprocess import prepare_case

    modalities = list(modalities)
    available = [m for m in modalities if m in case_files.images]
    missing = [m for m in modalities if m not in case_files.images]
    unlabelled = dataclasses.replace(case_files, seg=None)
    if not available:
        raise CaseError(case_files.case, None, f"none of the modalities {modalities} is present; nothing to "
                                               "synthesize the missing ones from")
    arrays, props = prepare_case(unlabelled, available, margin, stride, require_labels=False)
    if missing:
        arrays["image"] = synthesize_missing(arrays["image"], available, missing, tokenizer,
                                             arrays["brain"].astype(bool), order=modalities)
    props = {**props, "modalities": modalities, "synthesized": missing}
    return arrays, props
