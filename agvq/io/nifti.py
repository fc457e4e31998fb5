"""NIfTI reading and writing through nibabel, with errors that name the file and the problem."""
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


def read_volume(path: str | Path, dtype=None) -> Volume:
    """Load a 3D volume. ``dtype=None`` keeps the on-disk type (scaling slopes applied as nibabel does)."""
    try:
        img = nib.load(str(path))
        if dtype is None:
            data = np.asanyarray(img.dataobj)
        else:
            data = np.asarray(img.dataobj, dtype=dtype) if not _has_scaling(img) else img.get_fdata(dtype=np.float32).astype(dtype)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as exc:
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
