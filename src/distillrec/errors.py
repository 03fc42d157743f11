"""User-facing errors.

Anything a user can cause (bad file, bad flag, missing data) raises :class:`DistillrecError` with a
one-line message naming the file, line or field at fault. The CLI prints it without a traceback.
"""

from __future__ import annotations


class DistillrecError(Exception):
    """An error caused by user input or environment, reported as a single line."""


class DataError(DistillrecError):
    """Input data is missing, malformed or inconsistent."""
