"""Input validation for one case, each problem a CaseError naming the case, the file and what is wrong.

Two levels, so that the data of every file is read only once:

* ``validate_case`` checks what the headers tell (cheap): all requested files present and readable as NIfTI,
  3D, the same shape and affine across modalities and segmentation.
* ``load_image`` / ``load_seg`` read the data and check what only the data tells: not truncated, finite values,
  labels within the case's convention. The preprocessing pass calls them on the arrays it goes on to use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agvq.errors import CaseError
from agvq.io.discovery import CaseFiles
from agvq.io.naming import check_modalities
from agvq.io.nifti import NiftiReadError, read_header, read_volume
from agvq.regions import get_convention, unknown_labels


@dataclass(frozen=True)
class CaseHeader:
    """What the headers of a valid case agree on; ``files`` maps each used modality (params order), then 'seg'
    when the case has one, to its path."""

    case: str
    naming: str
    convention: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    spacing: tuple[float, float, float]
    files: dict[str, Path]

    @property
    def has_labels(self) -> bool:
        return "seg" in self.files


def _shape3d(case: str, path: Path, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise CaseError(case, path.name, f"expected a 3D volume, got shape {tuple(shape)}")
    return tuple(int(s) for s in shape)


def missing_modalities(case_files: CaseFiles, modalities) -> list[str]:
    """The requested modalities (params order) whose file the case lacks: those ``validate_case`` would stop on."""
    return [m for m in check_modalities(modalities)
            if case_files.images.get(m) is None or not case_files.images[m].is_file()]


def validate_case(case_files: CaseFiles, modalities, require_labels: bool = True, atol: float = 1e-4) -> CaseHeader:
    """Header checks for ``case_files``; returns the agreed grid. The segmentation is used whenever present and
    is required with ``require_labels``."""
    case = case_files.case
    files: dict[str, Path] = {}
    for modality in check_modalities(modalities):
        path = case_files.images.get(modality)
        if path is None or not path.is_file():
            raise CaseError(case, case_files.expected_name(modality), f"file for modality {modality} is missing")
        files[modality] = path
    if case_files.seg is not None:
        files["seg"] = case_files.seg
    elif require_labels:
        raise CaseError(case, case_files.expected_name("seg"), "segmentation file is missing")

    ref_name, ref = None, None
    for path in files.values():
        try:
            shape, affine, spacing = read_header(path)
        except NiftiReadError as exc:
            raise CaseError(case, path.name, str(exc)) from None
        shape = _shape3d(case, path, shape)
        if ref is None:
            ref_name, ref = path.name, (shape, affine, spacing)
            continue
        if shape != ref[0]:
            raise CaseError(case, path.name, f"shape {shape} differs from {ref_name} {ref[0]}")
        if not np.allclose(affine, ref[1], rtol=0.0, atol=atol):
            worst = float(np.abs(affine - ref[1]).max())
            raise CaseError(case, path.name, f"affine differs from {ref_name} (max difference {worst:.3g} > {atol:g})")
    return CaseHeader(case, case_files.naming, case_files.convention, ref[0], ref[1],
                      tuple(float(s) for s in ref[2]), files)


def _read(header: CaseHeader, path: Path) -> np.ndarray:
    try:
        data = read_volume(path).data
    except NiftiReadError as exc:
        raise CaseError(header.case, path.name, f"file is truncated or corrupt: {exc}") from None
    if data.shape != header.shape:
        raise CaseError(header.case, path.name, f"data shape {data.shape} differs from its header {header.shape}")
    return data


def load_image(header: CaseHeader, modality: str) -> np.ndarray:
    """Data of one modality in its stored dtype; raises CaseError when unreadable or not finite."""
    path = header.files[modality]
    data = _read(header, path)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise CaseError(header.case, path.name, f"unsupported voxel type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise CaseError(header.case, path.name, f"{bad} voxels are NaN or infinite")
    return data


def load_seg(header: CaseHeader) -> np.ndarray:
    """Segmentation as an integer array; raises CaseError for non-integer values or labels outside the convention."""
    path = header.files["seg"]
    data = _read(header, path)
    if not np.issubdtype(data.dtype, np.integer):
        as_int = data.astype(np.int16) if np.issubdtype(data.dtype, np.floating) and np.isfinite(data).all() else None
        if as_int is None or not np.array_equal(as_int, data):
            raise CaseError(header.case, path.name, "segmentation holds non-integer or non-finite values")
        data = as_int
    convention = get_convention(header.convention)
    bad = unknown_labels(data, convention)
    if bad:
        raise CaseError(header.case, path.name, f"label values {bad} are outside the {convention.name} convention "
                                                f"{list(convention.labels)}")
    return data
