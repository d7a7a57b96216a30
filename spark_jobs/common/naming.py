"""Lower snake_case names for lake tables and gold columns, from whatever a source calls them.

Plain Python (no Spark, no Airflow): the Airflow side names lake tables with it, the gold jobs
name columns with it.

The rule (``snake_case``):

1. Letters with accents lose them (``Größe``: ``ö`` -> ``o``); any other character that is not an
   ASCII letter or digit (space, ``-``, ``.``, ``_``, ``ß``, ``名``) separates words.
2. Inside a run of letters and digits a new word starts at a capital that follows a lower-case
   letter or a digit (``AddressID`` -> address, ID; ``Server2Name`` -> Server2, Name), and at
   the last capital of an acronym followed by a lower-case letter (``HTTPServer`` -> HTTP,
   Server). Digits stay with what precedes them (``Line2``, ``HTTP2``); leading digits start a
   word (``2ndLine`` -> 2nd, Line). An acronym's plural stays one word (``ProductIDs`` ->
   product_ids).
3. The words, lower-cased, joined by one ``_``: no leading, trailing or doubled underscores.

So AddressID -> address_id, SalesOrderID -> sales_order_id, rowguid -> rowguid,
HTTPServer2Name -> http_server2_name, ``Mixed_Case Name`` -> mixed_case_name, ``__x__`` -> x.
A name with no ASCII letter or digit left gives ``""``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from spark_jobs.common.errors import BadInputError

LAKE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RUN = re.compile(r"[A-Za-z0-9]+")
_WORD = re.compile(
    r"""
      [A-Z]{2,}s(?![a-z])        # an acronym's plural: IDs, URLs
    | [A-Z]+(?=[A-Z][a-z])       # an acronym before a capitalised word: HTTP in HTTPServer
    | [A-Z]?[a-z][a-z0-9]*       # a word, digits and lower-case letters after it: Server2, x2y
    | [A-Z]+(?:[0-9][a-z0-9]*)?  # an acronym or a lone capital, digits after it: ID, HTTP2
    | [0-9][a-z0-9]*             # leading digits: 2nd
    """,
    re.VERBOSE,
)


class NameCollisionError(BadInputError, ValueError):
    """Two names become the same after snake_case; the message names both."""


def snake_case(name: str) -> str:
    """``name`` in lower snake_case (see the module's rule); ``""`` when nothing is left."""
    if not isinstance(name, str):
        raise TypeError(f"a name must be a string, not {type(name).__name__}")
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    words = [word for run in _RUN.findall(plain) for word in _WORD.findall(run)]
    return "_".join(words).lower()


def lake_name(name: str) -> str | None:
    """``snake_case(name)`` when it is a valid lake table name (``^[a-z][a-z0-9_]{0,62}$``), else None."""
    found = snake_case(name)
    return found if LAKE_NAME.match(found) else None


def snake_columns(names: Iterable[str], *, keep: Iterable[str] = (), where: str = "") -> dict[str, str]:
    """Each name -> its snake_case, except the names in ``keep`` (kept as they are).

    Fails naming ``where`` and the columns when a name gives nothing, or when two names give
    the same result (``OrderID`` and ``order_id``), compared case-insensitively as SQL engines do.
    """
    kept = set(keep)
    prefix = f"{where}: " if where else ""
    renamed: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        new = name if name in kept else snake_case(name)
        if not new:
            raise BadInputError(f"{prefix}column {name!r} has no ASCII letter or digit to name it by")
        other = seen.get(new.lower())
        if other is not None:
            raise NameCollisionError(
                f"{prefix}columns {other!r} and {name!r} both become {new!r} in snake_case: "
                "rename one in the source or exclude the table"
            )
        seen[new.lower()] = name
        renamed[name] = new
    return renamed
