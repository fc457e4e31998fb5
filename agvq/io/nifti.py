"""NIfTI reading and writing through nibabel, with errors that name the file and the problem.

Every data read of a ``.nii.gz`` checks the whole gzip stream (CRC-32 and length of every member): nibabel stops
reading once it has the voxels, so on its own it never reaches the checksum and a file corrupted in the middle would
load with wrong voxels. Here the stream is opened once, nibabel reads header and voxels from it, and the rest is
read to its end, where :mod:`gzip` verifies the checksum (decompression and CRC are what nibabel's own reader does
anyway; the extra cost is reading the few bytes after the voxels).
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from agvq.io.atomic import atomic_path


class NiftiReadError(Exception):
    """The file exists but cannot be read as a NIfTI volume (truncated, not gzip, bad header...)."""


@dataclass
class Volume:
    data: np.ndarray
    affine: np.ndarray  # 4x4 float64
    spacing: tuple[float, ...]  # voxel size in mm along each array axis

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


def read_header(path: str | Path) -> tuple[tuple[int, ...], np.ndarray, tuple[float, ...]]:
    """(shape, affine, spacing) from the header only (cheap; the data is not decompressed)."""
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for broken files
        raise NiftiReadError(f"cannot read NIfTI header ({type(exc).__name__}: {exc})") from None
    return tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=np.float64), _spacing(img)


_READ_ERRORS = (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError,
                nib.spatialimages.HeaderDataError)
_NIFTI_CLASSES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}  # by sizeof_hdr, the first int32 of the header


def _array(img, dtype) -> np.ndarray:
    if dtype is None:
        return np.asanyarray(img.dataobj)
    if not _has_scaling(img):
        return np.asarray(img.dataobj, dtype=dtype)
    return img.get_fdata(dtype=np.float32).astype(dtype)


def _read_gzipped(path: Path, dtype):
    """(image, voxels) of a .nii.gz, its whole gzip stream verified (CRC and length) after the voxels are read."""
    with gzip.open(path, "rb") as stream:
        head = stream.read(4)
        if len(head) < 4:
            raise EOFError("file is truncated")
        sizes = {int.from_bytes(head, "little"), int.from_bytes(head, "big")}
        cls = next((_NIFTI_CLASSES[s] for s in sizes if s in _NIFTI_CLASSES), None)
        if cls is None:
            raise nib.filebasedimages.ImageFileError("not a NIfTI-1 or NIfTI-2 file (bad header size)")
        stream.seek(0)
        holder = nib.FileHolder(filename=str(path), fileobj=stream)
        img = cls.from_file_map({"header": holder, "image": holder}, mmap=False)
        data = _array(img, dtype)
        while stream.read(1 << 20):  # to the end of the stream: gzip checks CRC-32 and length there
            pass
    return img, data


def read_volume(path: str | Path, dtype=None) -> Volume:
    """Load a 3D volume. ``dtype=None`` keeps the on-disk type (scaling slopes applied as nibabel does).

    A ``.nii.gz`` is verified whole (gzip CRC and length); any damage is a NiftiReadError.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            img, data = _read_gzipped(path, dtype)
        else:
            img = nib.load(str(path))
            data = _array(img, dtype)
    except _READ_ERRORS as exc:
        raise NiftiReadError(f"cannot read NIfTI data ({type(exc).__name__}: {exc or 'file is truncated'})") from None
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise NiftiReadError(f"expected a 3D volume, got shape {tuple(data.shape)}")
    return Volume(np.asarray(data), np.asarray(img.affine, dtype=np.float64), _spacing(img))


def write_volume(path: str | Path, data: np.ndarray, affine: np.ndarray, spacing=None) -> None:
    """Write ``data`` with ``affine`` atomically as .nii.gz; qform and sform both set (code 1: scanner)."""
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    if spacing is not None:
        img.header.set_zooms(tuple(float(s) for s in spacing[:3]))
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _spacing(img) -> tuple[float, ...]:
    return tuple(float(z) for z in img.header.get_zooms()[:3])


def _has_scaling(img) -> bool:
    slope, inter = img.dataobj.slope, img.dataobj.inter
    return not (slope in (None, 1.0) and inter in (None, 0.0))
