"""Fault injection: every kind of bad input, bad output path and interruption, run through the stage scripts.

Each fault is one entry of FAULTS: it damages a small valid setup (4 tiny cases, tiny models), runs one stage (in
this process, or as a subprocess where a signal is involved) and checks the exit code, the single ``error:`` line
(no traceback) or the defined result, and that no input file changed (every input file is hashed before and
after). Faults that interrupt or fail a rerun also check that the previous outputs are left exactly as they were.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import yaml

from agvq.config import deep_merge
from agvq.io.nifti import write_volume
from agvq.io.outputs import MANIFEST
from tests.helpers_nifti import AFFINE, MODALITIES, SHAPE, phantom, save, truncate, write_case
from tests.test_inference import model_dir

ROOT = Path(__file__).resolve().parents[1]
CASES = ["C0", "C1", "C2", "C3"]
PARAMS = {
    "runtime": {"device": "cpu", "threads": 1},
    "preprocess": {"margin": 2, "stride": 16, "workers": 1,
                   "split": {"seed": 0, "val_fraction": 0.25, "test_fraction": 0.25}},
    "evaluate": {"workers": 1, "figure_cases": 1},
}
TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp")


# ------------------------------------------------------------------------------------------------ the setup
@dataclass
class Ctx:
    root: Path
    monkeypatch: pytest.MonkeyPatch
    script: str = "preprocess.py"
    argv: list[str] = field(default_factory=list)
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)  # outputs whose previous state must survive the fault
    params_extra: dict = field(default_factory=dict)
    subprocess: Callable | None = None  # runs the stage itself (signals); returns (code, stderr)
    counted: dict = field(default_factory=dict)
    previous: dict = field(default_factory=dict)  # snapshot of ``outputs`` before the run

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    def file(self, case: str, kind: str) -> Path:
        return self.raw / case / f"{case}_{kind}.nii.gz"

    def write_params(self) -> None:
        values = deep_merge(deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), PARAMS), self.params_extra)
        self.params.write_text(yaml.safe_dump(values, sort_keys=False))

    def preprocess(self, out: Path | None = None, raw: Path | None = None, splits: Path | None = None) -> None:
        self.script = "preprocess.py"
        out = out or self.root / "prepared"
        self.argv = ["--raw", str(raw or self.raw), "--out", str(out), "--splits", str(splits or self.root / "splits.json"),
                     "--report", str(self.root / "report.json")]
        self.inputs = [self.raw]

    def infer(self, out: Path | None = None) -> None:
        self.script = "infer.py"
        models = self.root / "models" if (self.root / "models").is_dir() else model_dir(self.root)
        self.argv = ["--models", str(models), "--raw", str(self.raw), "--out", str(out or self.root / "pred"),
                     "--report", str(self.root / "infer_report.json")]
        self.inputs = [self.raw, models]

    def evaluate(self, pred: Path | None = None, out_csv: Path | None = None) -> None:
        self.script = "evaluate.py"
        pred = pred or self.root / "pred"
        if not pred.exists():
            for case in ("C2", "C3"):  # perfect predictions: the ground truth itself
                img = nib.load(self.file(case, "seg"))
                write_volume(pred / f"{case}.nii.gz", np.asanyarray(img.dataobj), AFFINE)
        splits = self.root / "eval_splits.json"
        splits.write_text(json.dumps({"train": ["C0"], "val": ["C1"], "test": ["C2", "C3"]}))
        self.argv = ["--pred", str(pred), "--raw", str(self.raw), "--splits", str(splits),
                     "--out-csv", str(out_csv or self.root / "eval.csv"), "--out-json", str(self.root / "eval.json")]
        self.inputs = [self.raw, pred, splits]


def make_ctx(tmp_path, monkeypatch) -> Ctx:
    ctx = Ctx(tmp_path, monkeypatch)
    for i, case in enumerate(CASES):
        write_case(ctx.raw, case, seed=i)
    return ctx


def snapshot(paths) -> dict[str, str]:
    """sha256 of every file under ``paths`` (symbolic links by their target text), keyed by path."""
    out = {}
    for path in paths:
        path = Path(path)
        files = [path] if not path.is_dir() or path.is_symlink() else sorted(path.rglob("*"))
        for f in files:
            if f.is_symlink():
                out[str(f)] = "link:" + os.readlink(f)
            elif f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
            elif f.is_dir() and not any(f.iterdir()):
                out[str(f)] = "empty folder"
    return out


def run_inprocess(ctx: Ctx, capsys) -> tuple[int, str]:
    ctx.monkeypatch.setattr(sys, "argv", [ctx.script, "--params", str(ctx.params), *ctx.argv])
    capsys.readouterr()
    try:
        runpy.run_path(str(ROOT / "stages" / ctx.script), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def run_ok(ctx: Ctx) -> None:
    """Run the stage once successfully (the state a failing rerun must leave intact)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [ctx.script, "--params", str(ctx.params), *ctx.argv])
        try:
            runpy.run_path(str(ROOT / "stages" / ctx.script), run_name="__main__")
        except SystemExit as exc:
            pytest.fail(f"the stage failed ({exc.code}) on valid data")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if TEMP.match(p.name))


# ------------------------------------------------------------------------------------- processes and signals
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields after "pid (comm) ": state, ppid, ...


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


SLOW = """
import runpy, sys, time
sys.path.insert(0, {root!r})
import {module} as m
real = m.{func}
def slow(*a, **k):
    time.sleep(0.4)
    return real(*a, **k)
m.{func} = slow
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name="__main__")
"""
SLOWED = {"preprocess.py": ("agvq.data.preprocess", "prepare_from_header"),
          "infer.py": ("agvq.inference.predict", "predict_case_outputs")}


def start_slow(ctx: Ctx) -> subprocess.Popen:
    """The stage with every case slowed by 0.4 s (a wrapper patches the package; the stage code is untouched)."""
    module, func = SLOWED[ctx.script]
    code = SLOW.format(root=str(ROOT), module=module, func=func, script=str(ROOT / "stages" / ctx.script))
    return subprocess.Popen([sys.executable, "-c", code, "--params", str(ctx.params), *ctx.argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def wait_until(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the stage to get going")
        time.sleep(0.02)


def interrupt(ctx: Ctx, sig: int, expect_workers: int) -> tuple[int, str, list[int]]:
    """Run the slowed stage, send ``sig`` once it is writing (and its workers run), return (code, stderr, workers)."""
    proc = start_slow(ctx)
    staging = lambda: [p for p in ctx.root.rglob(".*.tmp") if p.is_dir()]  # noqa: E731
    try:
        wait_until(lambda: proc.poll() is not None or (staging() and len(children(proc.pid)) >= expect_workers))
        assert proc.poll() is None, proc.communicate()[1]
        if ctx.script == "infer.py":
            time.sleep(0.6)  # into the predictions
        workers = children(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, workers


def sigterm(ctx: Ctx) -> tuple[int, str]:
    code, err, workers = interrupt(ctx, signal.SIGTERM, 2 if ctx.script == "preprocess.py" else 0)
    wait_until(lambda: not any(alive(w) for w in workers), timeout=10)
    assert temporaries(ctx.root) == []  # cleaned up on the way out
    return code, err


def kill9_then_rerun(ctx: Ctx) -> tuple[int, str]:
    code, _, workers = interrupt(ctx, signal.SIGKILL, 2)
    assert code == -signal.SIGKILL and workers
    wait_until(lambda: not any(alive(w) for w in workers), timeout=10)  # orphaned workers exit on their own
    assert temporaries(ctx.root), "the killed run should have left its staging folder"
    assert snapshot(ctx.outputs) == ctx.previous, "the killed run changed the previous outputs"
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / ctx.script), "--params", str(ctx.params), *ctx.argv],
                          capture_output=True, text=True, timeout=300, env=_env())
    assert temporaries(ctx.root) == [], "the rerun must remove what the killed run left"
    ctx.outputs = []  # the rerun rewrites them (same inputs, same content)
    return proc.returncode, proc.stderr


# --------------------------------------------------------------------------------------------- the faults
@dataclass(frozen=True)
class Fault:
    setup: Callable[[Ctx], None]
    code: int
    message: str | None  # regex the single "error:" line must match (None: the stage succeeds)
    check: Callable[[Ctx], None] | None = None


def _override(ctx: Ctx, case: str, kind: str, data, affine=AFFINE) -> None:
    save(ctx.file(case, kind), data, affine)


def _image(seed: int = 2, modality: str = "t1") -> np.ndarray:
    return phantom(seed=seed)[0][modality]


def _zero_middle(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + count] = bytes(count)
    path.write_bytes(bytes(data))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _user_folder(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "scan.nii.gz").write_bytes(b"a scan of mine")


def _previous_preprocess(ctx: Ctx) -> None:
    ctx.preprocess()
    ctx.write_params()
    run_ok(ctx)
    ctx.outputs = [ctx.root / "prepared", ctx.root / "splits.json", ctx.root / "report.json"]


def _previous_infer(ctx: Ctx) -> None:
    ctx.infer()
    ctx.write_params()
    run_ok(ctx)
    ctx.outputs = [ctx.root / "pred", ctx.root / "infer_report.json"]


def _disk_full(*_, **__):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _full_on(ctx: Ctx, target, name: str, when: Callable | None = None) -> None:
    real = getattr(target, name)

    def full(*args, **kwargs):
        if when is None or when(*args, **kwargs):
            _disk_full()
        return real(*args, **kwargs)

    ctx.monkeypatch.setattr(target, name, full)


def _unwritable(ctx: Ctx) -> None:
    parent = ctx.root / "locked"
    parent.mkdir()
    os.chmod(parent, 0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse as a read-only one would
        real = tempfile.mkstemp
        ctx.monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: _denied(dir) if dir is not None and
                                Path(dir).resolve() == parent.resolve() else real(*a, dir=dir, **k))
    ctx.infer(out=parent / "pred")


def _denied(path):
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def _train_disk_full(ctx: Ctx) -> None:
    """A training stage on a disk that is full: every .pt written goes to /dev/full (writes fail with ENOSPC)."""
    import builtins

    from tests.helpers_training import TINY, make_prepared, vqvae_argv

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    prepared, splits = make_prepared(ctx.root / "data", n=6, size=32)
    ctx.params_extra = deep_merge(TINY, {"vqvae": {"train": {"epochs": 1}}})
    ctx.script, ctx.argv = "train_vqvae.py", vqvae_argv(ctx.root, ctx.root / "data", "m")[2:]
    ctx.inputs = [prepared, splits]
    real = builtins.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".pt"):
            return real("/dev/full", mode, *args, **kwargs)
        return real(file, mode, *args, **kwargs)

    ctx.monkeypatch.setattr(builtins, "open", full_disk_open)


def _counting_predict(ctx: Ctx) -> None:
    import agvq.inference.predict as predict

    real = predict.predict_case
    ctx.counted["predict_case"] = 0

    def counted(*args, **kwargs):
        ctx.counted["predict_case"] += 1
        return real(*args, **kwargs)

    ctx.monkeypatch.setattr(predict, "predict_case", counted)


def _check_prepared(cases):
    def check(ctx: Ctx) -> None:
        listed = sorted(p.stem for p in (ctx.root / "prepared").glob("*.npz"))
        assert listed == cases
    return check


def _check_report_warning(pattern: str, report="report.json"):
    def check(ctx: Ctx) -> None:
        warnings = json.loads((ctx.root / report).read_text())["warnings"]
        assert any(re.search(pattern, w["problem"]) for w in warnings), warnings
    return check


def _check_skipped(ctx: Ctx) -> None:
    report = json.loads((ctx.root / "infer_report.json").read_text())
    assert [s["case"] for s in report["skipped"]] == ["C1", "C3"] and report["predicted"] == ["C0", "C2"]
    assert "CRC check failed" in report["skipped"][0]["problem"] or "corrupt" in report["skipped"][0]["problem"]
    assert sorted(p.name for p in (ctx.root / "pred").iterdir()) == [MANIFEST, "C0.nii.gz", "C2.nii.gz"]


def _check_symlink_kept(ctx: Ctx) -> None:
    link = ctx.root / "pred"
    assert link.is_symlink() and os.readlink(link) == str(ctx.root / "elsewhere")
    assert sorted(p.name for p in link.iterdir()) == [MANIFEST] + [f"{c}.nii.gz" for c in CASES]


def _symlink_to_empty(ctx: Ctx) -> None:
    (ctx.root / "elsewhere").mkdir()
    (ctx.root / "pred").symlink_to(ctx.root / "elsewhere")
    ctx.infer()


def _symlink_to_user(ctx: Ctx) -> None:
    _user_folder(ctx.root / "mine")
    (ctx.root / "pred").symlink_to(ctx.root / "mine")
    ctx.infer()
    ctx.inputs.append(ctx.root / "mine")


def _marked_plus_user_file(ctx: Ctx) -> None:
    _previous_infer(ctx)
    (ctx.root / "pred" / "notes.txt").write_text("added by hand")
    ctx.outputs = []
    ctx.inputs.append(ctx.root / "pred")


def _stray(ctx: Ctx) -> None:
    (ctx.raw / "name_mapping.csv").write_text("a,b\n")
    (ctx.raw / "C1" / "notes.txt").write_text("scanner notes")
    (ctx.raw / ".DS_Store").write_bytes(b"\0")
    ctx.preprocess()


def _no_et(ctx: Ctx) -> None:
    for i, case in enumerate(CASES):
        seg = phantom(seed=i)[1]
        seg[seg == 4] = 1  # enhancing tumour relabelled necrosis: no ET anywhere
        _override(ctx, case, "seg", seg)
    ctx.preprocess()


def _image_4d(ctx: Ctx) -> None:
    _override(ctx, "C2", "t2", np.stack([_image(2, "t2")] * 2, axis=-1))
    ctx.preprocess()


def _user_split_file(ctx: Ctx) -> None:
    (ctx.root / "splits_final.json").write_text(json.dumps([{"train": ["C0", "C1", "C9"], "val": ["C2"]}]))
    ctx.params_extra = {"preprocess": {"split": {"file": str(ctx.root / "splits_final.json")}}}
    ctx.preprocess()
    ctx.inputs.append(ctx.root / "splits_final.json")


def _check_user_split(ctx: Ctx) -> None:
    splits = json.loads((ctx.root / "splits.json").read_text())
    assert (splits["train"], splits["val"], splits["test"]) == (["C0", "C1"], ["C2"], ["C3"])
    _check_report_warning(r"1 train case\(s\) were not prepared")(ctx)
    _check_report_warning(r"does not list 1 prepared case")(ctx)


FAULTS: dict[str, Fault] = {
    # --- bad scans (preprocess) ---
    "missing_modality": Fault(lambda c: (c.file("C2", "t1ce").unlink(), c.preprocess()), 2,
                              r"^error: case C2: file C2_t1ce\.nii\.gz: file for modality t1ce is missing$"),
    "missing_segmentation": Fault(lambda c: (c.file("C1", "seg").unlink(), c.preprocess()), 2,
                                  r"^error: case C1: file C1_seg\.nii\.gz: segmentation file is missing$"),
    "shape_mismatch": Fault(lambda c: (_override(c, "C2", "t2", _image(2, "t2")[:, :, :-1]), c.preprocess()), 2,
                            r"^error: case C2: file C2_t2\.nii\.gz: shape \(24, 24, 15\) differs from"),
    "affine_mismatch": Fault(lambda c: (_override(c, "C2", "t1", _image(), AFFINE + np.diag([0.5, 0, 0, 0])),
                                        c.preprocess()), 2, r"^error: case C2: file C2_t1\.nii\.gz: affine differs"),
    "nan_voxels": Fault(lambda c: (_override(c, "C1", "flair", np.where(_image(1, "flair") > 300, np.nan,
                                                                         _image(1, "flair")).astype(np.float32)),
                                   c.preprocess()), 2, r"^error: case C1: file C1_flair\.nii\.gz: \d+ voxels are NaN"),
    "inf_voxels": Fault(lambda c: (_override(c, "C1", "t2", np.where(_image(1, "t2") > 300, np.inf,
                                                                      _image(1, "t2")).astype(np.float32)),
                                   c.preprocess()), 2, r"^error: case C1: file C1_t2\.nii\.gz: \d+ voxels are NaN or inf"),
    "unknown_labels": Fault(lambda c: (_override(c, "C3", "seg", np.where(phantom(seed=3)[1] == 4, 3,
                                                                          phantom(seed=3)[1]).astype(np.uint8)),
                                       c.preprocess()), 2,
                            r"^error: case C3: file C3_seg\.nii\.gz: label values \[3\] are outside the brats2021"),
    "non_integer_labels": Fault(lambda c: (_override(c, "C3", "seg", phantom(seed=3)[1] + np.float32(0.5)),
                                           c.preprocess()), 2, r"C3_seg\.nii\.gz: segmentation holds non-integer"),
    "truncated_gzip": Fault(lambda c: (truncate(c.file("C1", "t1"), 0.6), c.preprocess()), 2,
                            r"^error: case C1: file C1_t1\.nii\.gz: file is truncated or corrupt"),
    "header_only_file": Fault(lambda c: (truncate(c.file("C1", "t1"), 0.0), c.preprocess()), 2,
                              r"^error: case C1: file C1_t1\.nii\.gz: cannot read NIfTI header"),
    "corrupted_gzip_zeroed": Fault(lambda c: (_zero_middle(c.file("C2", "flair")), c.preprocess()), 2,
                                   r"^error: case C2: file C2_flair\.nii\.gz: file is truncated or corrupt"),
    "corrupted_gzip_bitflip": Fault(lambda c: (_flip_byte(c.file("C0", "t2")), c.preprocess()), 2,
                                    r"^error: case C0: file C0_t2\.nii\.gz: file is truncated or corrupt"),
    "non_nifti_renamed": Fault(lambda c: (c.file("C2", "t1").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)),
                                          c.preprocess()), 2,
                               r"^error: case C2: file C2_t1\.nii\.gz: cannot read NIfTI header"),
    "image_4d": Fault(_image_4d, 2, r"^error: case C2: file C2_t2\.nii\.gz: expected a 3D volume"),
    "all_zero_case": Fault(lambda c: ([_override(c, "C1", m, np.zeros(SHAPE, np.int16)) for m in MODALITIES],
                                      _override(c, "C1", "seg", np.zeros(SHAPE, np.uint8)), c.preprocess()), 2,
                           r"^error: case C1: every modality is zero"),
    "empty_case_folder": Fault(lambda c: ((c.raw / "C9").mkdir(), c.preprocess()), 2,
                               r"^error: case C9: case folder .* is empty$"),
    "no_cases_at_all": Fault(lambda c: ([shutil.rmtree(c.raw / x) for x in CASES], c.preprocess()), 2,
                             r"^error: file .*raw: no cases found"),
    "raw_missing": Fault(lambda c: c.preprocess(raw=c.root / "nowhere"), 2,
                         r"^error: file .*nowhere: raw data folder does not exist$"),
    "duplicate_ids": Fault(lambda c: (write_case(c.raw / "site_a", "D1"), write_case(c.raw / "site_b", "D1"),
                                      c.preprocess()), 2, r"^error: case D1: duplicate case id"),
    "stray_files": Fault(_stray, 0, None, _check_prepared(CASES)),
    # --- suspicious but valid data: a warning and a report entry ---
    "constant_modality": Fault(lambda c: (_override(c, "C1", "t2", np.zeros(SHAPE, np.int16)), c.preprocess()), 0,
                               None, _check_report_warning(r"modality t2 is all zero inside the brain")),
    "no_tumour_region_in_train": Fault(_no_et, 0, None, _check_report_warning(r"the train split has no ET voxels")),
    "user_split_file": Fault(_user_split_file, 0, None, _check_user_split),
    # --- output paths that would destroy data ---
    "out_equals_raw": Fault(lambda c: c.preprocess(out=c.raw), 2,
                            r"^error: output --out .*raw is the same path as the input --raw .*raw; choose"),
    "out_inside_raw": Fault(lambda c: c.preprocess(out=c.raw / "prepared"), 2,
                            r"^error: output --out .*raw/prepared lies inside the input --raw .*raw;"),
    "out_contains_raw": Fault(lambda c: c.preprocess(out=c.root), 2, r"^error: output --out .* contains the input --raw"),
    "splits_inside_out": Fault(lambda c: c.preprocess(splits=c.root / "prepared" / "splits.json"), 2,
                               r"^error: output --out .*prepared contains the output --splits"),
    "infer_out_equals_raw": Fault(lambda c: c.infer(out=c.raw), 2, r"^error: output --out .* the input --raw"),
    "out_existing_user_folder": Fault(lambda c: (_user_folder(c.root / "prepared"), c.preprocess(),
                                                 c.inputs.append(c.root / "prepared")), 2,
                                      r"^error: output folder .*prepared already exists and was not written by the "
                                      r"preprocess stage; move its files away or choose another output folder"),
    "infer_out_existing_user_folder": Fault(lambda c: (_user_folder(c.root / "pred"), c.infer(),
                                                       c.inputs.append(c.root / "pred")), 2,
                                            r"^error: output folder .*pred already exists and was not written by the "
                                            r"infer stage"),
    "infer_out_written_by_another_stage": Fault(lambda c: (_previous_preprocess(c), c.infer(out=c.root / "prepared"),
                                                           c.inputs.append(c.root / "prepared")), 2,
                                                r"not written by the infer stage \(it was written by the preprocess"),
    "infer_out_own_folder_plus_user_file": Fault(_marked_plus_user_file, 2,
                                                 r"^error: output folder .*pred holds files the infer stage did not "
                                                 r"write \(notes\.txt\)"),
    "infer_out_symlink_to_user_folder": Fault(_symlink_to_user, 2, r"^error: output folder .*pred already exists",
                                              lambda c: (c.root / "pred").is_symlink() or pytest.fail("link replaced")),
    "infer_out_symlink_written_through": Fault(_symlink_to_empty, 0, None, _check_symlink_kept),
    "eval_out_inside_predictions": Fault(lambda c: c.evaluate(out_csv=c.root / "pred" / "cases.csv"), 2,
                                         r"^error: output --out-csv .* lies inside the input --pred"),
    # --- output faults ---
    "unwritable_out": Fault(_unwritable, 2, r"^error: output folder .*locked is not writable"),
    "out_under_regular_file": Fault(lambda c: ((c.root / "afile").write_text("x"), c.infer(out=c.root / "afile" / "p")),
                                    2, r"^error: output folder .*afile is not writable \(.*afile is a file, not a "
                                       r"folder\)"),
    "disk_full_prepared": Fault(lambda c: (_previous_preprocess(c), _full_on(c, np.lib.format, "write_array")), 2,
                                r"^error: cannot write .*prepared: the disk is full"),
    "disk_full_report": Fault(lambda c: (_previous_preprocess(c),
                                         _full_on(c, Path, "write_text",
                                                  lambda p, *a, **k: p.name.startswith(".report.json."))), 2,
                              r"^error: cannot write .*report\.json: the disk is full"),
    "train_disk_full": Fault(_train_disk_full, 2, r"^error: cannot write .*\.pt: the disk is full"),
    "infer_disk_full": Fault(lambda c: (_previous_infer(c), _full_on(c, nib, "save")), 2,
                             r"^error: cannot write .*pred: the disk is full"),
    # --- infer: every case checked first; stop or skip ---
    "infer_missing_modality_last_case": Fault(lambda c: (c.file("C3", "t2").unlink(), _counting_predict(c), c.infer()),
                                              2, r"^error: case C3: file C3_t2\.nii\.gz: file for modality t2 is "
                                                 r"missing$",
                                              lambda c: c.counted["predict_case"] == 0 or pytest.fail("predicted")),
    "infer_corrupted_gzip": Fault(lambda c: (_zero_middle(c.file("C1", "t1ce")), c.infer()), 2,
                                  r"^error: case C1: file C1_t1ce\.nii\.gz: file is truncated or corrupt",
                                  lambda c: not (c.root / "pred").exists() or pytest.fail("partial output")),
    "infer_skip": Fault(lambda c: (_zero_middle(c.file("C1", "t1ce")), c.file("C3", "t2").unlink(),
                                   c.params_extra.update(infer={"on_error": "skip"}), c.infer()), 0, None,
                        _check_skipped),
    # --- evaluate reads verified files too ---
    "eval_corrupted_truth": Fault(lambda c: (c.evaluate(), _zero_middle(c.file("C2", "seg"))), 2,
                                  r"^error: case C2: file .*C2_seg\.nii\.gz: cannot read NIfTI data"),
    "eval_corrupted_prediction": Fault(lambda c: (c.evaluate(), _zero_middle(c.root / "pred" / "C3.nii.gz", 16)), 2,
                                       r"^error: case C3: file .*pred/C3\.nii\.gz: cannot read NIfTI data"),
    # --- interruptions (subprocesses) ---
    "sigterm_preprocess": Fault(lambda c: (_previous_preprocess(c), c.params_extra.update(
        preprocess={"workers": 2}), setattr(c, "subprocess", sigterm)), 143, r"^error: terminated \(SIGTERM\)"),
    "sigterm_infer": Fault(lambda c: (_previous_infer(c), setattr(c, "subprocess", sigterm)), 143,
                           r"^error: terminated \(SIGTERM\)"),
    "kill9_then_rerun": Fault(lambda c: (_previous_preprocess(c), c.params_extra.update(preprocess={"workers": 2}),
                                         setattr(c, "subprocess", kill9_then_rerun)), 0, None,
                              _check_prepared(CASES)),
}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_fault(kind, tmp_path, monkeypatch, capsys):
    fault = FAULTS[kind]
    ctx = make_ctx(tmp_path, monkeypatch)
    fault.setup(ctx)
    ctx.write_params()
    ctx.inputs.append(ctx.params)
    before = snapshot(ctx.inputs)
    ctx.previous = snapshot(ctx.outputs)
    code, err = ctx.subprocess(ctx) if ctx.subprocess else run_inprocess(ctx, capsys)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == fault.code, err
    if fault.message is None:
        assert errors == [], err
    else:
        assert len(errors) == 1, err
        assert re.search(fault.message, errors[0]), errors[0]
    assert snapshot(ctx.inputs) == before, "an input file changed"
    assert snapshot(ctx.outputs) == (ctx.previous if ctx.outputs else {}), "the previous outputs were not left intact"
    if code != 0:
        assert temporaries(tmp_path) == [], "a failed run left temporaries behind"
    if fault.check is not None:
        fault.check(ctx)


def test_every_fault_kind_of_the_issue_is_covered():
    required = {"missing_modality", "shape_mismatch", "affine_mismatch", "nan_voxels", "inf_voxels", "unknown_labels",
                "truncated_gzip", "corrupted_gzip_zeroed", "empty_case_folder", "stray_files", "duplicate_ids",
                "image_4d", "non_nifti_renamed", "out_equals_raw", "out_inside_raw", "infer_out_existing_user_folder",
                "unwritable_out", "disk_full_prepared", "kill9_then_rerun", "sigterm_preprocess"}
    assert required <= set(FAULTS)
