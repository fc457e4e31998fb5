"""Find BraTS cases under a raw folder, in either naming, as the archives come (no renaming needed).

A case is a folder whose files are named after it: ``<case>/<case>_<mod>.nii.gz`` (brats2021) or
``<case>/<case>-<mod>.nii.gz`` (brats2023); ``.nii`` is accepted too. Case folders may sit directly under the raw
folder or one level deeper (``BraTS2021_Training_Data/BraTS2021_00000/...``). Loose files (csv, tar) and hidden
entries are ignored. The naming is detected per case from the files present, so one raw folder may mix both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agvq.errors import CaseError
from agvq.io.naming import NAMINGS, get_naming

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
EXPECTED = "<case>/<case>_<mod>.nii.gz (brats2021) or <case>/<case>-<mod>.nii.gz (brats2023)"


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case: canonical modality name -> path (only those present), and the segmentation."""

    case: str
    naming: str
    folder: Path
    images: dict[str, Path] = field(default_factory=dict)
    seg: Path | None = None

    @property
    def convention(self) -> str:
        """Label convention name (agvq.regions) that this case's naming implies."""
        return get_naming(self.naming).convention

    def expected_name(self, modality: str) -> str:
        """File name the case's naming gives to ``modality`` (canonical name or 'seg')."""
        return get_naming(self.naming).filename(self.case, modality)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES)


def _find(folder: Path, case: str, separator: str, suffix: str, names: set[str]) -> Path | None:
    for ext in NIFTI_SUFFIXES:
        name = f"{case}{separator}{suffix}{ext}"
        if name in names:
            return folder / name
    return None


def read_case_folder(folder: Path) -> CaseFiles:
    """Interpret one case folder; raises CaseError when it is empty, mixes namings or has no files of its own."""
    case = folder.name
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if not any(True for p in folder.iterdir() if _visible(p)):
        raise CaseError(case, None, f"case folder {folder} is empty")
    found: dict[str, CaseFiles] = {}
    for naming in NAMINGS.values():
        images = {}
        for modality, suffix in naming.modality_suffix.items():
            path = _find(folder, case, naming.separator, suffix, names)
            if path is not None:
                images[modality] = path
        seg = _find(folder, case, naming.separator, naming.seg_suffix, names)
        if images or seg is not None:
            found[naming.name] = CaseFiles(case, naming.name, folder, images, seg)
    if not found:
        listed = ", ".join(sorted(names)[:5]) or "no files"
        raise CaseError(case, None, f"folder {folder} has no files named {EXPECTED} with the folder name as "
                                    f"<case> (found: {listed})")
    if len(found) > 1:
        raise CaseError(case, None, f"folder {folder} mixes brats2021 (_<mod>) and brats2023 (-<mod>) file names")
    return next(iter(found.values()))


def case_folders(raw_dir: Path) -> list[Path]:
    """Candidate case folders: visible sub-folders of ``raw_dir``, or of its container sub-folders.

    A sub-folder holding NIfTI files, or no sub-folders at all, is a case folder; one holding only sub-folders
    (e.g. ``BraTS2021_Training_Data``) is a container whose sub-folders are the cases.
    """
    out = []
    for sub in sorted(p for p in raw_dir.iterdir() if p.is_dir() and _visible(p)):
        children = [p for p in sub.iterdir() if _visible(p)]
        inner = sorted(p for p in children if p.is_dir())
        if inner and not any(_is_nifti(p) for p in children):
            out.extend(inner)
        else:
            out.append(sub)
    return out


def scan_cases(raw_dir: str | Path) -> tuple[list[CaseFiles], list[CaseError]]:
    """Every case under ``raw_dir`` (sorted by id) and the folders that could not be read as a case.

    Fatal problems raise CaseError: a missing raw folder, no case folders at all, the same case id found twice.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise CaseError(None, str(raw_dir), "raw data folder does not exist")
    cases: dict[str, CaseFiles] = {}
    problems: dict[str, CaseError] = {}
    seen: dict[str, Path] = {}
    for folder in case_folders(raw_dir):
        if folder.name in seen:
            raise CaseError(folder.name, None, f"duplicate case id: found in {seen[folder.name]} and {folder}")
        seen[folder.name] = folder
        try:
            cases[folder.name] = read_case_folder(folder)
        except CaseError as exc:
            problems[folder.name] = exc
    if not seen:
        raise CaseError(None, str(raw_dir), f"no cases found; expected {EXPECTED}")
    return [cases[c] for c in sorted(cases)], [problems[c] for c in sorted(problems)]


def discover_cases(raw_dir: str | Path, require_labels: bool = False) -> list[CaseFiles]:
    """Every case under ``raw_dir`` sorted by id; any unreadable case folder (or, with ``require_labels``, a case
    without a segmentation) raises CaseError."""
    cases, problems = scan_cases(raw_dir)
    if problems:
        raise problems[0]
    if require_labels:
        for case in cases:
            if case.seg is None:
                raise CaseError(case.case, case.expected_name("seg"), "segmentation file is missing")
    return cases
