"""Errors a user can act on: one line naming the case, the file and the problem."""
from __future__ import annotations


class CaseError(Exception):
    """A problem with one input case; ``str()`` is the single line shown to the user."""

    def __init__(self, case: str | None, file: str | None, problem: str):
        self.case, self.file, self.problem = case, file, problem
        where = []
        if case:
            where.append(f"case {case}")
        if file:
            where.append(f"file {file}")
        super().__init__((": ".join(where) + ": " if where else "") + problem)

    def __reduce__(self):  # picklable, so it crosses process-pool boundaries intact
        return (CaseError, (self.case, self.file, self.problem))


class ConfigError(Exception):
    """Invalid parameters or paths given to a stage."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss); the message names the epoch and step."""


class OutputError(ConfigError):
    """An output path a stage must not or cannot write: it overlaps an input, holds files the stage did not write,
    is unwritable, lies under a regular file, or its disk is full. The message names the path and what to do."""
