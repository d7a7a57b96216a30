"""Generated Netflix-like source files for the demo and tests.

Same files, columns and quirks as the real extracts: a UTF-8 BOM before every header, CRLF line
ends, empty show_ids, quotes and commas in descriptions, missing durations; and one title with a
line break inside quotes, which a CSV source may always send. Deterministic for a given seed.
"""

from __future__ import annotations

import csv
import json
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


F1_DROPS = ("2021-03-21", "2021-03-28", "2021-04-18")
F1_TEAMS = ["Mercedes", "Red Bull", "Ferrari", "McLaren", "Alpine"]
F1_CIRCUITS = [
    ("bahrain", "Sakhir", "Bahrain"),
    ("imola", "Imola", "Italy"),
    ("portimao", "Portimão", "Portugal"),
]


def _json_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _json_array(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")


def write_formula1_drops(raw: str | Path, seed: int = 21) -> list[str]:
    """Three drops in the real drops' formats under ``raw/<file_date>/``: a cut-over without
    results.json (as the real one), then one new race per drop. Returns the drop dates."""
    rng = random.Random(seed)
    raw = Path(raw)
    drivers = [
        {
            "driverId": i,
            "driverRef": f"driver{i}",
            "number": i if i % 4 else "\\N",
            "code": f"D{i:02d}",
            "name": {"forename": f"Driver{i}", "surname": rng.choice(WORDS)},
            "dob": f"199{i % 10}-0{1 + i % 9}-1{i % 9}",
            "nationality": rng.choice(["British", "Dutch", "Spanish", "Mexican"]),
            "url": f"http://example.com/d{i}",
        }
        for i in range(1, 11)
    ]
    constructors = [
        {
            "constructorId": i + 1,
            "constructorRef": team.lower().replace(" ", "_"),
            "name": team,
            "nationality": "British",
            "url": "http://example.com/c",
        }
        for i, team in enumerate(F1_TEAMS)
    ]
    races = [(900 + n, 2020, n + 1, 1 + n % 3, f"2020-0{3 + n}-15", "13:10:00") for n in range(4)]
    races += [
        (1000 + n, 2021, n + 1, 1 + n, f"2021-0{3 + n}-28", "15:00:00" if n else "\\N") for n in range(3)
    ]
    for index, day in enumerate(F1_DROPS):
        folder = raw / day
        if folder.exists():
            continue
        folder.mkdir(parents=True)
        with open(folder / "circuits.csv", "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(
                ["circuitId", "circuitRef", "name", "location", "country", "lat", "lng", "alt", "url"]
            )
            for i, (ref, place, country) in enumerate(F1_CIRCUITS, start=1):
                out.writerow(
                    [
                        i,
                        ref,
                        f"{place} Circuit",
                        place,
                        country,
                        26.0 + i,
                        50.5 + i,
                        "\\N" if i == 2 else 7,
                        "u",
                    ]
                )
        with open(folder / "races.csv", "w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(["raceId", "year", "round", "circuitId", "name", "date", "time", "url"])
            out.writerows([*race[:4], f"Grand Prix {race[0]}", *race[4:], "u"] for race in races)
        _json_lines(folder / "constructors.json", constructors)
        _json_lines(folder / "drivers.json", drivers)
        # the cut-over holds the 2020 races; each later drop brings one 2021 race
        race_ids = [r[0] for r in races[:4]] if index == 0 else [races[3 + index][0]]
        pit_stops, laps, qualifying, results = [], [], [], []
        for race_id in race_ids:
            order = rng.sample(drivers, len(drivers))
            for position, driver in enumerate(order, start=1):
                team = constructors[driver["driverId"] % len(constructors)]
                results.append(
                    {
                        "resultId": race_id * 100 + position,
                        "raceId": race_id,
                        "driverId": driver["driverId"],
                        "constructorId": team["constructorId"],
                        "number": driver["driverId"],
                        "grid": rng.randint(1, 10),
                        "position": position if position < 10 else "\\N",
                        "positionText": position,
                        "positionOrder": position,
                        "points": max(0, 11 - position) * 2,
                        "laps": 50,
                        "time": "\\N",
                        "milliseconds": "\\N",
                        "fastestLap": rng.randint(1, 50),
                        "rank": position,
                        "fastestLapTime": "1:35.000",
                        "fastestLapSpeed": 205.1,
                        "statusId": 1,
                    }
                )
                qualifying.append(
                    {
                        "qualifyId": race_id * 100 + position,
                        "raceId": race_id,
                        "driverId": driver["driverId"],
                        "constructorId": team["constructorId"],
                        "number": driver["driverId"],
                        "position": position,
                        "q1": "1:31.000",
                        "q2": "\\N",
                        "q3": "\\N",
                    }
                )
                pit_stops.append(
                    {
                        "raceId": race_id,
                        "driverId": driver["driverId"],
                        "stop": 1,
                        "lap": rng.randint(10, 30),
                        "time": "15:30:00",
                        "duration": f"{rng.uniform(20, 30):.3f}",
                        "milliseconds": 24000,
                    }
                )
                laps += [
                    [race_id, driver["driverId"], lap, position, "1:36.000", 96000] for lap in range(1, 6)
                ]
        _json_array(folder / "pit_stops.json", pit_stops)
        _json_array(folder / "qualifying" / "qualifying_split_1.json", qualifying)
        (folder / "lap_times").mkdir()
        with open(
            folder / "lap_times" / "lap_times_split_1.csv", "w", newline="", encoding="utf-8"
        ) as handle:
            csv.writer(handle).writerows(laps)
        if index:
            _json_lines(folder / "results.json", results)
    return list(F1_DROPS)
