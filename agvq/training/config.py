"""The ``train`` params of any model, validated once into a typed config."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from agvq.errors import ConfigError

METRIC_DIRECTIONS = {"dice": "max", "hd95": "min", "loss": "min"}


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 4
    patch_size: tuple = (32, 32, 32)
    patches_per_epoch: int = 64
    foreground_fraction: float = 0.7
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_epochs: int = 0
    val_metric: str = "dice"
    val_every: int = 1
    sw_overlap: float = 0.25
    sw_batch_size: int = 2
    num_workers: int = 0
    flip: bool = True
    cache: bool = True
    empty_penalty: float = 373.13

    @classmethod
    def from_params(cls, params: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"unknown train params {unknown}; known: {sorted(known)}")
        cfg = cls(**params)
        for f in fields(cls):  # YAML 1.1 reads "3e-3" (no dot) as a string: accept numbers written that way
            value, default = getattr(cfg, f.name), getattr(cls, f.name, None)
            if isinstance(default, (int, float)) and not isinstance(default, bool) and not isinstance(value, bool):
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"train.{f.name} must be a number, got {value!r}") from None
                if isinstance(default, int) and not number.is_integer():
                    raise ConfigError(f"train.{f.name} must be a whole number, got {value!r}")
                setattr(cfg, f.name, number if isinstance(default, float) else int(number))
        cfg.patch_size = tuple(int(p) for p in cfg.patch_size)
        if len(cfg.patch_size) != 3 or min(cfg.patch_size) <= 0:
            raise ConfigError(f"patch_size must be three positive integers, got {cfg.patch_size}")
        if cfg.val_metric not in METRIC_DIRECTIONS:
            raise ConfigError(f"val_metric must be one of {sorted(METRIC_DIRECTIONS)}, got {cfg.val_metric!r}")
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.patches_per_epoch < cfg.batch_size:
            raise ConfigError("need epochs >= 1, batch_size >= 1 and patches_per_epoch >= batch_size")
        return cfg

    def as_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d


def deep_merge(base: dict, override: dict | None) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (per-region / per-variant overrides)."""
    out = dict(base)
    for key, value in (override or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
