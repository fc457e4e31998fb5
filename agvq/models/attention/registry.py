"""Build a 3D attention module by name, and place modules in a network from its ``attention`` settings.

The settings are the variant's ``attention`` params (agvq.config.attention.AttentionSpec) as a plain dict:
``encoder`` / ``decoder`` / ``skips`` (a module name each) and the module hyperparameters ``reduction``,
``spatial_kernel`` and ``slice_axis``. A model stores them in its config, so a model file rebuilds the same network.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from agvq.models.attention.base import FeatureAttention, NoAttention
from agvq.models.attention.channel import CBAM, ConcurrentSE, ProjectExcite, SqueezeExcite3D
from agvq.models.attention.gate import AttentionGate
from agvq.models.attention.slices import ProgressiveAttention, SliceAttention

POSITIONS = ("encoder", "decoder", "skips")
HYPERPARAMETERS = ("reduction", "spatial_kernel", "slice_axis")

_BUILDERS: dict[str, Callable[..., FeatureAttention]] = {
    "none": lambda c, **_: NoAttention(c),
    "se": lambda c, *, reduction, **_: SqueezeExcite3D(c, reduction),
    "cbam": lambda c, *, reduction, spatial_kernel, **_: CBAM(c, reduction, spatial_kernel),
    "scse": lambda c, *, reduction, **_: ConcurrentSE(c, reduction),
    "pe": lambda c, *, reduction, **_: ProjectExcite(c, reduction),
    "gate": lambda c, *, gate_channels, **_: AttentionGate(c, gate_channels),
    "slice": lambda c, *, reduction, slice_axis, **_: SliceAttention(c, reduction, slice_axis),
    "pam": lambda c, *, reduction, slice_axis, **_: ProgressiveAttention(c, reduction, slice_axis),
}
NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_attention(name: str, channels: int, *, reduction: int, spatial_kernel: int, slice_axis: int,
                    gate_channels: int | None = None) -> FeatureAttention:
    """The module ``name`` for feature maps of ``channels`` channels (``gate_channels``: the gating signal's, for
    ``gate``; None = self-gating). ValueError for an unknown name or sizes the module cannot take."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown attention module {name!r}; known: {list(NAMES)}")
    return _BUILDERS[name](int(channels), reduction=int(reduction), spatial_kernel=int(spatial_kernel),
                           slice_axis=int(slice_axis), gate_channels=gate_channels)


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validated copy of a model's ``attention`` settings (None: no attention anywhere); ValueError otherwise."""
    if settings is None:
        return None
    if not isinstance(settings, Mapping):
        raise ValueError(f"attention settings must be a mapping, got {settings!r}")
    expected = set(POSITIONS + HYPERPARAMETERS)
    if set(settings) != expected:
        raise ValueError(f"attention settings need exactly the keys {sorted(expected)}, got {sorted(settings)}")
    out = dict(settings)
    for position in POSITIONS:
        if out[position] not in _BUILDERS:
            raise ValueError(f"attention.{position}: unknown module {out[position]!r}; known: {list(NAMES)}")
    return out


def uses_attention(settings: Mapping[str, Any] | None) -> bool:
    return settings is not None and any(settings[p] != "none" for p in POSITIONS)


def attention_at(settings: Mapping[str, Any] | None, position: str, channels: int,
                 gate_channels: int | None = None) -> FeatureAttention:
    """The module the settings put at ``position`` (encoder, decoder or skips) for ``channels`` channels."""
    if position not in POSITIONS:
        raise ValueError(f"unknown attention position {position!r}; known: {list(POSITIONS)}")
    if settings is None:
        return NoAttention(channels)
    return build_attention(settings[position], channels, reduction=settings["reduction"],
                           spatial_kernel=settings["spatial_kernel"], slice_axis=settings["slice_axis"],
                           gate_channels=gate_channels)
