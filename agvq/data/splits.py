"""Seeded train/val/test splits by case id (validation picks checkpoints; test is touched only by evaluate)."""
from __future__ import annotations

import numpy as np

from agvq.errors import ConfigError


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) counts: each non-zero fraction gets at least one case, train keeps at least one."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"split {name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"split val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise ConfigError(f"{n} valid case(s) cannot fill {needed} non-empty splits (train/val/test); "
                          f"add cases or set the val/test fractions to 0")
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    while n - n_val - n_test < 1:  # rounding up both may leave train empty: take back from the larger one
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def make_splits(case_ids, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """{"seed", "train", "val", "test"} with sorted ids; the same ids, fractions and seed give the same split
    whatever order the ids come in."""
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        raise ConfigError("duplicate case ids given to make_splits")
    _, n_val, n_test = split_sizes(len(ids), val_fraction, test_fraction)
    order = np.random.default_rng(int(seed)).permutation(len(ids))
    test = sorted(ids[i] for i in order[:n_test])
    val = sorted(ids[i] for i in order[n_test:n_test + n_val])
    train = sorted(ids[i] for i in order[n_test + n_val:])
    return {"seed": int(seed), "train": train, "val": val, "test": test}
