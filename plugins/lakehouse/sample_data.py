"""Generated Netflix-like source files for the demo and tests.

Same files, columns and quirks as the real extracts: a UTF-8 BOM before every header, CRLF line
ends, empty show_ids, quotes and commas in descriptions, missing durations; and one title with a
line break inside quotes, which a CSV source may always send. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from lakehouse.metadata import load_pipeline

TITLE_COLUMNS = next(f["columns"] for f in load_pipeline("netflix")["files"] if f["table"] == "titles")
LOOKUPS = {
    "netflix_cast.csv": (
        "cast",
        ["Ana Silva", "Raj Patel", "Mei Chen", "Tom O'Neil", "Lea Müller", "Kofi Mensah"],
    ),
    "netflix_category.csv": ("listed_in", ["Dramas", "Comedies", "Documentaries", "Kids' TV", "Thrillers"]),
    "netflix_countries.csv": ("country", ["United States", "India", "France", "Japan", "Brazil", "Nigeria"]),
    "netflix_directors.csv": ("director", ["Ava Lee", "Omar Haddad", "Ines Costa", "Ken Ito"]),
}
WORDS = ["Night", "River", "Signal", "Garden", "Echo", "Harbor", "Winter", "Atlas", "Ember", "Drift"]
RATINGS = ["TV-MA", "TV-14", "PG-13", "R", "TV-Y7-FV", "NR"]


def _write(path: Path, header: list[str], rows: list[list]) -> int:
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return len(rows)


def write_netflix_sample(folder: str | Path, titles: int = 400, seed: int = 7) -> dict[str, int]:
    """Write the five CSV files into ``folder``; returns the data rows written per file."""
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    show_ids = [str(80_000_000 + i * 7) for i in range(titles)]
    rows = []
    for index, show_id in enumerate(show_ids):
        movie = rng.random() < 0.7
        name = f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
        if index % 5 == 0:
            name += f": Part {index % 3 + 1}"
        if index == 3:
            name += "\n(Director's Cut)"  # a line break inside a quoted field
        rows.append(
            [
                rng.randint(60, 180) if movie and index % 17 else "",
                "" if movie else rng.randint(1, 8),
                "Movie" if movie else "TV Show",
                name,
                f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(2015, 2021)}",
                rng.randint(1990, 2021),
                rng.choice(RATINGS),
                f'A "{rng.choice(WORDS).lower()}" story, told with care, about {rng.choice(WORDS).lower()}s.',
                "" if index in (7, 11) else show_id,  # empty show_ids, as in the real file
            ]
        )
    counts = {"netflix_titles.csv": _write(folder / "netflix_titles.csv", TITLE_COLUMNS, rows)}
    for file_name, (column, values) in LOOKUPS.items():
        lookup_rows = [
            [value, show_id]
            for show_id in show_ids
            for value in rng.sample(values, rng.randint(1, min(3, len(values))))
        ]
        lookup_rows.append([values[0], ""])  # a lookup row without a show_id
        counts[file_name] = _write(folder / file_name, [column, "show_id"], lookup_rows)
    return counts
