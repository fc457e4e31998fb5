import numpy as np
import pytest

from agvq.errors import CaseError
from agvq.io.discovery import discover_cases, scan_cases
from helpers_nifti import save, write_case


def test_brats2021_cases_directly_under_raw(tmp_path):
    write_case(tmp_path, "BraTS2021_00002")
    write_case(tmp_path, "BraTS2021_00000")
    (tmp_path / "name_mapping.csv").write_text("a,b\n")  # loose files are ignored
    cases = discover_cases(tmp_path)
    assert [c.case for c in cases] == ["BraTS2021_00000", "BraTS2021_00002"]
    c = cases[0]
    assert c.naming == "brats2021" and c.convention == "brats2021"
    assert sorted(c.images) == ["flair", "t1", "t1ce", "t2"]
    assert c.images["t1ce"].name == "BraTS2021_00000_t1ce.nii.gz"
    assert c.seg.name == "BraTS2021_00000_seg.nii.gz"


def test_archive_layouts_one_level_deeper_and_mixed_namings(tmp_path):
    write_case(tmp_path / "BraTS2021_Training_Data", "BraTS2021_00000")
    write_case(tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData", "BraTS-GLI-00000-000",
               naming="brats2023")
    (tmp_path / ".cache").mkdir()  # hidden folders are ignored
    cases = {c.case: c for c in discover_cases(tmp_path)}
    assert sorted(cases) == ["BraTS-GLI-00000-000", "BraTS2021_00000"]
    c23 = cases["BraTS-GLI-00000-000"]
    assert c23.naming == "brats2023" and c23.convention == "brats2023"
    assert c23.images["flair"].name == "BraTS-GLI-00000-000-t2f.nii.gz"  # canonical names map to 2023 files
    assert c23.images["t1ce"].name == "BraTS-GLI-00000-000-t1c.nii.gz"
    assert c23.images["t1"].name == "BraTS-GLI-00000-000-t1n.nii.gz"
    assert c23.seg.name == "BraTS-GLI-00000-000-seg.nii.gz"


def test_partial_modalities_unlabelled_and_uncompressed(tmp_path):
    write_case(tmp_path, "P1", modalities=("flair", "t1ce"), with_seg=False)
    folder = tmp_path / "P2"
    save(folder / "P2-t2f.nii", np.ones((4, 4, 4), np.int16))
    cases = {c.case: c for c in discover_cases(tmp_path)}
    assert sorted(cases["P1"].images) == ["flair", "t1ce"] and cases["P1"].seg is None
    assert cases["P2"].naming == "brats2023" and cases["P2"].images["flair"].name == "P2-t2f.nii"
    with pytest.raises(CaseError, match="case P1: file P1_seg.nii.gz: segmentation file is missing"):
        discover_cases(tmp_path, require_labels=True)


def test_duplicate_case_ids_are_an_error(tmp_path):
    write_case(tmp_path / "batch1", "C1")
    write_case(tmp_path / "batch1", "C2")
    write_case(tmp_path / "batch2", "C1")
    with pytest.raises(CaseError, match="case C1: duplicate case id: found in .*batch1/C1 and .*batch2/C1"):
        scan_cases(tmp_path)


def test_unreadable_case_folders_are_listed_per_case(tmp_path):
    write_case(tmp_path, "GOOD")
    (tmp_path / "EMPTY").mkdir()
    write_case(tmp_path, "OTHER").rename(tmp_path / "RENAMED")  # folder name no longer matches the files
    mixed = write_case(tmp_path, "MIX")
    save(mixed / "MIX-t1n.nii.gz", np.ones((4, 4, 4), np.int16))
    cases, problems = scan_cases(tmp_path)
    assert [c.case for c in cases] == ["GOOD"]
    messages = {p.case: str(p) for p in problems}
    assert sorted(messages) == ["EMPTY", "MIX", "RENAMED"]
    assert "case EMPTY: case folder" in messages["EMPTY"] and "is empty" in messages["EMPTY"]
    assert "mixes brats2021" in messages["MIX"]
    assert "has no files named" in messages["RENAMED"] and "OTHER_t1.nii.gz" in messages["RENAMED"]
    with pytest.raises(CaseError, match="case EMPTY"):
        discover_cases(tmp_path)


def test_raw_folder_without_cases(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(CaseError, match="no cases found; expected <case>/<case>_<mod>.nii.gz"):
        scan_cases(tmp_path)
    with pytest.raises(CaseError, match="raw data folder does not exist"):
        scan_cases(tmp_path / "missing")
