"""Errors raised for bad user input.

Every error names the offending file (or config key) and says what to do, so
that a failed Snakemake job log is enough for the user to fix the input.
"""

from __future__ import annotations

from pathlib import Path


class LungsynthError(Exception):
    """Base class of the errors lungsynth raises on purpose."""


class ConfigError(LungsynthError):
    """A config key is unknown or has an invalid value."""


class InputDataError(LungsynthError):
    """A data file is unreadable or inconsistent.

    Parameters
    ----------
    path:
        The offending file (or folder).
    problem:
        What is wrong, in a few words.
    fix:
        What the user can do about it.
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        message = f"{self.path}: {problem}"
        if fix:
            message += f" -- {fix}"
        super().__init__(message)
