"""Safe outputs (agvq.io.outputs / atomic), verified gzip reads (agvq.io.nifti) and worker pools (agvq.processes)."""
from __future__ import annotations

import gzip
import multiprocessing as mp
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from agvq.errors import OutputError
from agvq.io.atomic import atomic_path, remove_stale, write_json
from agvq.io.nifti import NiftiReadError, read_volume
from agvq.io.outputs import (MANIFEST, atomic_dir, check_replaceable, check_separate, read_manifest, staged_outputs)
from agvq.processes import worker_pool
from tests.test_faults import alive


# ------------------------------------------------------------------------------------------- output folders
def test_folder_carries_a_deterministic_manifest_and_is_replaced_only_by_its_stage(tmp_path):
    out = tmp_path / "pred"
    with atomic_dir(out, "infer") as tmp:
        (tmp / "a.nii.gz").write_bytes(b"a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
    assert read_manifest(out) == {"stage": "infer", "files": ["a.nii.gz", "sub/b.txt"]}
    first = (out / MANIFEST).read_bytes()
    with atomic_dir(out, "infer") as tmp:
        (tmp / "a.nii.gz").write_bytes(b"a2")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
    assert (out / MANIFEST).read_bytes() == first and (out / "a.nii.gz").read_bytes() == b"a2"
    with pytest.raises(OutputError, match=r"not written by the preprocess stage \(it was written by the infer"):
        check_replaceable(out, "preprocess")
    (out / "mine.txt").write_text("do not lose me")
    with pytest.raises(OutputError, match=r"holds files the infer stage did not write \(mine\.txt\)"):
        with atomic_dir(out, "infer"):
            pass
    assert (out / "mine.txt").read_text() == "do not lose me" and (out / "a.nii.gz").read_bytes() == b"a2"


def test_a_file_added_while_the_stage_runs_stops_the_commit(tmp_path):
    out = tmp_path / "pred"
    with atomic_dir(out, "infer") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(OutputError, match="did not write"):
        with atomic_dir(out, "infer") as tmp:
            (tmp / "a").write_text("2")
            (out / "late.txt").write_text("written by the user during the run")
    assert (out / "a").read_text() == "1" and (out / "late.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred"]


def test_error_inside_the_block_leaves_the_previous_folder_and_no_temporaries(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, "s") as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, "s") as tmp:
            (tmp / "x").write_text("new")
            raise RuntimeError("boom")
    assert (out / "x").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_outputs_are_committed_all_or_nothing(tmp_path):
    with staged_outputs("s") as staged:
        (staged.folder(tmp_path / "d") / "x").write_text("1")
        staged.write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(RuntimeError):
        with staged_outputs("s") as staged:
            (staged.folder(tmp_path / "d") / "x").write_text("2")
            staged.write_json(tmp_path / "a.json", {"v": 2})
            raise RuntimeError("the last output failed")
    assert (tmp_path / "d" / "x").read_text() == "1" and '"v": 1' in (tmp_path / "a.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]


def test_symlinked_outputs_are_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with atomic_dir(tmp_path / "link", "s") as tmp:
        (tmp / "x").write_text("1")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "x").read_text() == "1"
    (tmp_path / "target.json").write_text("{}")
    (tmp_path / "file_link.json").symlink_to(tmp_path / "target.json")
    write_json(tmp_path / "file_link.json", {"a": 1})
    assert (tmp_path / "file_link.json").is_symlink() and '"a": 1' in (tmp_path / "target.json").read_text()


@pytest.mark.parametrize("out, inp, relation", [("x", "x", "is the same path as"), ("x", "x/y", "contains"),
                                                 ("x/y", "x", "lies inside")])
def test_overlapping_paths_are_refused_naming_both(tmp_path, out, inp, relation):
    with pytest.raises(OutputError) as info:
        check_separate({"--raw": tmp_path / inp}, {"--out": tmp_path / out})
    assert str(info.value).startswith(f"output --out {tmp_path / out} {relation} the input --raw {tmp_path / inp}")
    check_separate({"--raw": tmp_path / "a"}, {"--out": tmp_path / "ab", "--report": None})  # a prefix is not a parent
    (tmp_path / "via").symlink_to(tmp_path / "x", target_is_directory=True)
    with pytest.raises(OutputError, match="is the same path as"):
        check_separate({"--raw": tmp_path / "x"}, {"--out": tmp_path / "via"})


def _hold_temporary(path: str, ready, done) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("in progress")
        ready.set()
        done.wait(30)


def test_stale_temporaries_are_removed_but_live_ones_kept(tmp_path):
    target = tmp_path / "splits.json"
    ctx = mp.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_hold_temporary, args=(str(target), ready, done))
    writer.start()
    try:
        assert ready.wait(30)
        live = [p for p in tmp_path.iterdir() if p.name.startswith(".splits.json.")]
        assert len(live) == 1
        stale_file = tmp_path / ".splits.json.abcd1234.tmp.json"
        stale_file.write_text("left by kill -9")
        stale_dir = tmp_path / ".splits.json.efgh5678.tmp"
        stale_dir.mkdir()
        (tmp_path / ".splits.json.backup").write_text("the user's, not a temporary")
        assert sorted(remove_stale(target)) == sorted([stale_file, stale_dir])
        assert live[0].exists() and (tmp_path / ".splits.json.backup").exists()
    finally:
        done.set()
        writer.join(30)
    assert target.read_text() == "in progress"


def test_a_killed_folder_stage_is_cleaned_by_the_next_run_only_if_it_is_that_stage(tmp_path):
    for name, stage in (("aaaaaaaa", "infer"), ("bbbbbbbb", "preprocess")):
        left = tmp_path / f".pred.{name}.tmp"
        left.mkdir()
        (left / MANIFEST).write_text(f'{{"stage": "{stage}", "files": []}}')
        (left / "C1.nii.gz").write_bytes(b"partial")
    with atomic_dir(tmp_path / "pred", "infer") as tmp:
        (tmp / "C1.nii.gz").write_bytes(b"done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pred.bbbbbbbb.tmp", "pred"]  # another stage's: kept


def test_full_disk_and_output_under_a_file_are_one_line_output_errors(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile is a file, not a folder"):
        write_json(tmp_path / "afile" / "out.json", {})
    with pytest.raises(OutputError, match="is a folder; the stage writes a file there"):
        write_json(tmp_path, {})

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match=r"^cannot write .*m\.json: the disk is full \(No space left on device\)"):
        write_json(tmp_path / "m.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# ------------------------------------------------------------------------------------------ verified gzip
def _nifti(tmp_path, data, name="v.nii.gz", slope=None) -> Path:
    img = nib.Nifti1Image(data, np.diag([1.5, 1.0, 2.0, 1.0]))
    if slope is not None:
        img.header.set_slope_inter(slope, 3.0)
    path = tmp_path / name
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.float64])
def test_verified_read_equals_nibabel(tmp_path, dtype):
    data = (np.random.default_rng(0).random((7, 6, 5)) * 100).astype(dtype)
    for path in (_nifti(tmp_path, data), _nifti(tmp_path, data, "v.nii"), _nifti(tmp_path, data, "s.nii.gz", 0.5)):
        ref = nib.load(str(path))
        vol = read_volume(path)
        np.testing.assert_array_equal(vol.data, np.asanyarray(ref.dataobj))
        assert vol.data.dtype == np.asanyarray(ref.dataobj).dtype
        np.testing.assert_array_equal(vol.affine, ref.affine)
        np.testing.assert_array_equal(read_volume(path, dtype=np.float32).data, ref.get_fdata(dtype=np.float32))
    big_endian = nib.Nifti1Image(data.astype(data.dtype.newbyteorder(">")), np.eye(4))
    nib.save(big_endian, str(tmp_path / "be.nii.gz"))
    np.testing.assert_array_equal(read_volume(tmp_path / "be.nii.gz").data, data)
    nib.save(nib.Nifti2Image(data, np.eye(4)), str(tmp_path / "n2.nii.gz"))
    np.testing.assert_array_equal(read_volume(tmp_path / "n2.nii.gz").data, data)


def test_corruption_is_rejected_exactly_when_the_full_gzip_check_fails(tmp_path):
    """Cross-check with the standard library's one-shot gzip.decompress (CRC-32 and length of every member)."""
    rng = np.random.default_rng(1)
    data = rng.normal(300, 40, (40, 40, 30)).astype(np.int16)
    raw = _nifti(tmp_path, data).read_bytes()
    nibabel_accepted = rejected = 0
    for trial in range(60):
        damaged = bytearray(raw)
        pos = int(rng.integers(len(raw) // 4, len(raw) - 8))
        if trial % 2:
            damaged[pos] ^= 1 << int(rng.integers(0, 8))
        else:
            damaged[pos:pos + 64] = bytes(64)
        path = tmp_path / "d.nii.gz"
        path.write_bytes(bytes(damaged))
        try:
            gzip.decompress(bytes(damaged))
            valid = True
        except (OSError, EOFError):  # BadGzipFile is an OSError
            valid = False
        try:
            np.asanyarray(nib.load(str(path)).dataobj)
            nibabel_accepted += 1
        except Exception:
            pass
        try:
            read_volume(path)
            ours = True
        except NiftiReadError as exc:
            ours = False
            assert "\n" not in str(exc)
        assert ours == valid, f"trial {trial}: ours {ours}, full gzip check {valid}"
        rejected += not ours
    assert rejected >= 55 and nibabel_accepted > 20  # nibabel alone misses many of them


def test_trailing_and_truncated_streams(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(5, 4, 3)
    path = _nifti(tmp_path, data)
    raw = path.read_bytes()
    path.write_bytes(raw[:-4])  # the length field cut off: the stream is incomplete
    with pytest.raises(NiftiReadError):
        read_volume(path)
    path.write_bytes(raw + raw)  # two members (as `cat a.gz b.gz` makes): valid gzip, read through
    np.testing.assert_array_equal(read_volume(path).data, data)


# ------------------------------------------------------------------------------------------- worker pools
def _slow(x):
    time.sleep(0.5)
    return x


def test_pool_cancels_queued_tasks_and_stops_workers_on_error():
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with worker_pool(2) as pool:
            futures = [pool.submit(_slow, i) for i in range(40)]
            futures[0].result()
            workers = list(pool._processes)  # the pool's own processes (other children of pytest may exist)
            raise KeyboardInterrupt
    assert len(workers) == 2 and not any(alive(w) for w in workers)  # terminated and joined
    assert time.perf_counter() - t0 < 10  # not the 10 s the 40 queued tasks would take
    assert sum(f.done() and not f.cancelled() for f in futures) < 40
    with worker_pool(2) as pool:
        assert sorted(pool.map(_slow, range(4))) == [0, 1, 2, 3]
