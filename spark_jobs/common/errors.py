"""Errors that mean "bad input: retrying cannot fix it".

Every failure a job raises because of what it was given (a file that does not parse, too many
rescued rows, an empty delivery that is not allowed, conflicting duplicates, a missing required
file, a broken expectation) is a :class:`BadInputError`. The Airflow side maps it, by class name
in the exception's MRO, to a failure that is not retried: the same input fails the same way.
Plain Python, no Airflow import, so the jobs stay deployable on their own.
"""

from __future__ import annotations


class BadInputError(RuntimeError):
    """Bad input: the same input fails the same way, so a retry cannot fix it."""


class RescuedRowsError(BadInputError):
    """A delivery has more rows that do not fit its columns than its source tolerates."""


class UnparsableFileError(BadInputError):
    """A file does not parse as a whole (a truncated JSON array, a JSON-lines file cut mid-record)."""


class EmptyDeliveryError(BadInputError):
    """A file holds no rows and its source does not declare ``allow_empty: true``."""


class ConflictingDuplicatesError(BadInputError):
    """Rows of one delivery share a key with different values and no declared rule resolves them."""


def shorten(text: str | None, limit: int = 120) -> str:
    """One line of at most ``limit`` characters, for naming bad input in a message."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
