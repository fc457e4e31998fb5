"""Stable train/val/test splits by case id (validation picks checkpoints; test is touched only by evaluate).

The scheme: each case gets a number ``u`` in [0, 1) from the first 8 bytes of ``sha256(f"{seed}:{case_id}")``
(big-endian, divided by 2**64); it goes to test when ``u < test_fraction``, to val when ``u < test_fraction +
val_fraction``, and to train otherwise. A case's split depends on nothing but the seed and its own id, so adding,
fixing or removing a case moves only that case, and ``dvc metrics diff`` across such commits compares the same
test cases. The split sizes follow the fractions on average (binomially: 1,251 BraTS cases at 0.2 give 250 +- 14
test cases); the seed picks one of many equally valid splits.

Minimums, as before: each split with a non-zero fraction gets at least one case and train keeps at least one. On a
tiny dataset where the hash leaves such a split empty, the case of the largest split whose ``u`` lies closest to
the empty split's interval moves there (only then can another case's split depend on the dataset).

Users who already hold a split (ours, or nnU-Net's ``splits_final.json``) pass it instead (``splits_from_file``).
"""
from __future__ import annotations

import hashlib

from agvq.errors import ConfigError
from agvq.io.splits import SPLITS, read_user_splits


def case_key(case_id: str, seed: int) -> float:
    """The case's number in [0, 1): sha256 of ``"{seed}:{case_id}"``, first 8 bytes big-endian / 2**64."""
    digest = hashlib.sha256(f"{int(seed)}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_fractions(n: int, val_fraction: float, test_fraction: float) -> int:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"split {name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(f"split val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise ConfigError(f"{n} valid case(s) cannot fill {needed} non-empty splits (train/val/test); "
                          f"add cases or set the val/test fractions to 0")
    return needed


def make_splits(case_ids, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """{"seed", "method", "train", "val", "test"} with sorted ids, each case assigned by its hash (module doc)."""
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        raise ConfigError("duplicate case ids given to make_splits")
    _check_fractions(len(ids), val_fraction, test_fraction)
    bounds = {"test": (0.0, test_fraction), "val": (test_fraction, test_fraction + val_fraction),
              "train": (test_fraction + val_fraction, 1.0)}
    keys = {c: case_key(c, seed) for c in ids}
    parts: dict[str, list[str]] = {k: [] for k in SPLITS}
    for case, u in keys.items():
        name = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"
        parts[name].append(case)
    wanted = ["train"] + [k for k, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    for name in wanted:  # the minimum of one case, on tiny datasets only
        if parts[name]:
            continue
        lo, hi = bounds[name]
        donor = max((k for k in SPLITS if len(parts[k]) > 1), key=lambda k: len(parts[k]))
        case = min(parts[donor], key=lambda c: min(abs(keys[c] - lo), abs(keys[c] - hi)))
        parts[donor].remove(case)
        parts[name].append(case)
    return {"seed": int(seed), "method": "sha256(seed:case) against the fractions",
            **{k: sorted(parts[k]) for k in SPLITS}}


def splits_from_file(path, fold: int, case_ids) -> tuple[dict, list[str]]:
    """The user's split file restricted to ``case_ids`` (the prepared cases), and warning lines.

    Cases the file lists that were not prepared (skipped or absent) are dropped with a warning; prepared cases the
    file does not list go to test (an nnU-Net fold lists only train and val) with a warning. The train split must
    keep at least one case.
    """
    given = read_user_splits(path, fold)
    prepared = set(case_ids)
    warnings = []
    out = {}
    for name in SPLITS:
        out[name] = sorted(c for c in given[name] if c in prepared)
        dropped = sorted(c for c in given[name] if c not in prepared)
        if dropped:
            warnings.append(f"split file {path}: {len(dropped)} {name} case(s) were not prepared and are left out "
                            f"({', '.join(dropped[:3])}{', ...' if len(dropped) > 3 else ''})")
    listed = {c for name in SPLITS for c in given[name]}
    extra = sorted(prepared - listed)
    if extra:
        out["test"] = sorted(out["test"] + extra)
        warnings.append(f"split file {path} does not list {len(extra)} prepared case(s); they go to test "
                        f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
    if not out["train"]:
        raise ConfigError(f"split file {path} leaves no prepared case in train")
    return {"seed": None, "method": f"file {path}" + (f" (fold {fold})" if given.get("fold") is not None else ""),
            **out}, warnings
