"""The cases infer predicts, every one checked before any is predicted, and what a bad case does.

``select_cases`` finds the requested cases under the raw folder (an unreadable case folder outside the request
is ignored); ``check_cases`` validates the headers of all of them (files present and readable, 3D, one grid) before
the first prediction, as preprocessing does. ``infer.on_error`` then decides: ``stop`` raises the first problem in
case order (nothing is written), ``skip`` leaves the case out, logs one warning line and lists it in the report.
Problems only the data shows (a truncated or corrupted file, NaN) are found when the case is read, and handled the
same way through :meth:`CaseOutcomes.failed`.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from agvq.errors import CaseError, ConfigError
from agvq.io.discovery import CaseFiles, scan_cases
from agvq.io.validation import missing_modalities, validate_case

log = logging.getLogger(__name__)


def select_cases(raw_dir, case_ids: list[str] | None) -> tuple[list[CaseFiles], list[CaseError]]:
    """(readable case folders, problems of unreadable ones) among ``case_ids`` (None: every case folder)."""
    cases, problems = scan_cases(raw_dir)
    if case_ids is None:
        return cases, problems
    by_id, bad = {c.case: c for c in cases}, {p.case: p for p in problems}
    missing = [c for c in case_ids if c not in by_id and c not in bad]
    if missing:
        raise ConfigError(f"cases {missing[:5]} of the split are not under {raw_dir}")
    return [by_id[c] for c in case_ids if c in by_id], [bad[c] for c in case_ids if c in bad]


def _entry(exc: CaseError) -> dict:
    return {"case": exc.case, "file": exc.file, "problem": exc.problem}


@dataclasses.dataclass
class CaseOutcomes:
    """The cases to predict and what happened to the others (skipped with their problem, warnings)."""

    on_error: str
    cases: list[CaseFiles]
    skipped: list[CaseError] = dataclasses.field(default_factory=list)
    warnings: list[dict] = dataclasses.field(default_factory=list)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def failed(self, exc: CaseError) -> None:
        """A case failed while predicting it: raise under ``stop``, else record it and go on."""
        if self.on_error == "stop":
            raise exc
        log.warning("skipped %s", exc)
        self.skipped.append(exc)

    def warn(self, case: str, items) -> None:
        """Suspicious but valid data of ``case`` (e.g. a constant modality): one warning line each."""
        for item in items:
            log.warning("case %s: file %s: %s", case, item.get("file"), item["problem"])
            self.warnings.append({"case": case, **item})

    def report(self, written: list[str], raw_dir, model_dir) -> dict:
        skipped = sorted(self.skipped, key=lambda e: e.case or "")
        return {
            "raw_dir": str(raw_dir), "models": str(model_dir), "on_error": self.on_error,
            "counts": {"requested": len(written) + len(skipped), "predicted": len(written), "skipped": len(skipped)},
            "predicted": list(written),
            "skipped": [_entry(e) for e in skipped],
            "warnings": self.warnings,
            "elapsed_seconds": round(time.perf_counter() - self.started, 3),
        }


def check_cases(cases: list[CaseFiles], problems: list[CaseError], modalities, on_error: str, raw_dir,
                missing: str) -> CaseOutcomes:
    """Validate the headers of every case (labels are never opened) before any prediction; returns the cases to
    predict. Under ``stop`` the first problem in case order is raised; under ``skip`` failing cases are logged
    and left out. No case left to predict is a CaseError. With ``missing`` (params ``infer.missing_modality``)
    other than ``error``, a missing sequence is not a problem (it is filled when the case is read) as long as one
    sequence is present."""
    outcomes = CaseOutcomes(on_error, [])
    failures = list(problems)
    for case_files in cases:
        unlabelled = dataclasses.replace(case_files, seg=None)
        absent = missing_modalities(unlabelled, modalities) if missing != "error" else []
        present = [m for m in modalities if m not in absent]
        try:
            if not present:
                raise CaseError(case_files.case, None, f"none of the sequences {list(modalities)} is present")
            validate_case(unlabelled, present, require_labels=False)
        except CaseError as exc:
            failures.append(exc)
        else:
            outcomes.cases.append(case_files)
    failures.sort(key=lambda e: e.case or "")
    if on_error == "stop" and failures:
        raise failures[0]
    for exc in failures:
        outcomes.failed(exc)
    if not outcomes.cases:
        first = f": {failures[0]}" if failures else ""
        raise CaseError(None, str(Path(raw_dir)), f"no valid cases to predict ({len(failures)} skipped{first})")
    return outcomes
