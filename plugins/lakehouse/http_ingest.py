"""HTTP file to the raw layer: what ADF's Copy activity did, plus change detection.

Each file is fetched with ``HttpHook``, conditionally (``If-None-Match``/``If-Modified-Since``
from the last landed copy), checked (complete transfer, non-empty, header as declared), and
landed under a new name only when its content changed:

    raw/<pipeline>/<table>/<UTC landing time>__<sha256 prefix>.<ext>   (the data, never rewritten)
    raw/<pipeline>/_sources/<table>.json                               (what was last landed)

A file is written under a hidden temporary name and renamed, so Spark never sees half a file.
The record is written after the file, so a failure between the two re-fetches, never skips.

A file must decode strictly with its declared ``encoding`` (UTF-8 unless the metadata says
otherwise): one that does not fails its fetch naming the first bad byte, so no replacement
character ever reaches the lake. ``SourceError.retryable`` says whether trying again can help (a
5xx or an interrupted transfer) or not (a 4xx other than 408/429, a malformed or undecodable file).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

from lakehouse.storage import lake_path

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class SourceError(RuntimeError):
    """A source file could not be fetched or does not look like the declared file.

    ``retryable`` is False when fetching again cannot help: the server refused the request (a
    4xx other than 408 or 429) or the file is malformed (empty, wrong header, wrong encoding).
    """

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


# 4xx answers a retry can fix: a request timeout and "too many requests"
RETRYABLE_4XX = frozenset({408, 429})


@dataclass
class Landed:
    table: str
    source: str
    status: str  # "landed" or "unchanged"
    raw_file: str
    bytes: int
    sha256: str
    etag: str | None
    last_modified: str | None
    landed_at: str


def source_record_path(pipeline: str, table: str):
    return lake_path("raw", pipeline, "_sources", f"{table}.json")


def read_record(pipeline: str, table: str) -> dict | None:
    path = source_record_path(pipeline, table)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def check_encoding(spool, encoding: str, name: str) -> None:
    """The whole file must decode with ``encoding``; else a non-retryable error naming the first
    byte that does not (its offset from the start of the file, 0-based)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    spool.seek(0)
    offset = 0  # bytes fed to the decoder before this chunk
    while True:
        chunk = spool.read(CHUNK)
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            # positions are in the bytes the decoder was holding: a suffix of all bytes read so far
            at = offset + len(chunk) - len(exc.object) + exc.start
            bad = exc.object[exc.start : exc.end]
            raise SourceError(
                f"{name}: not valid {encoding} at byte offset {at} (0x{bad.hex()}: {exc.reason}); "
                "declare the file's encoding in the pipeline metadata if it is not "
                f"{encoding}. Nothing was landed",
                retryable=False,
            ) from None
        if not chunk:
            return
        offset += len(chunk)


def check_header(first_bytes: bytes, columns: list[str], name: str, encoding: str = "utf-8") -> None:
    """The file's header must be the declared columns, in order (a UTF-8 BOM is allowed).

    ``first_bytes`` is the start of a file that decodes with ``encoding``; a character cut at its
    end is ignored (the whole file is checked by ``check_encoding``).
    """
    text = codecs.getincrementaldecoder(encoding)(errors="strict").decode(first_bytes, final=False)
    if codecs.lookup(encoding).name == "utf-8":
        text = text.removeprefix("\ufeff")
    header = next(csv.reader(io.StringIO(text)), [])
    header = [h.strip() for h in header]
    if header == list(columns):
        return
    missing = [c for c in columns if c not in header]
    unexpected = [h for h in header if h not in columns]
    detail = (
        f"missing {missing}, unexpected {unexpected}" if missing or unexpected else "columns out of order"
    )
    raise SourceError(
        f"{name}: header does not match the declared columns ({detail}); got {header}", retryable=False
    )


def _download(hook, endpoint: str, headers: dict, name: str, sink) -> tuple[int, dict, str]:
    """Stream the body into ``sink``; returns (status, response headers, sha256)."""
    import requests

    response = hook.run(endpoint, headers=headers, extra_options={"stream": True, "check_response": False})
    with response:
        if response.status_code == 304:
            return 304, dict(response.headers), ""
        if response.status_code != 200:
            code = response.status_code
            raise SourceError(
                f"{name}: HTTP {code} {response.reason} from {response.url}",
                retryable=not (400 <= code < 500) or code in RETRYABLE_4XX,
            )
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in response.iter_content(CHUNK):
                digest.update(chunk)
                sink.write(chunk)
                size += len(chunk)
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as exc:
            raise SourceError(f"{name}: transfer interrupted after {size} bytes ({exc})") from exc
        expected = response.headers.get("Content-Length")
        if expected is not None and "Content-Encoding" not in response.headers and int(expected) != size:
            raise SourceError(f"{name}: truncated transfer, got {size} of {expected} bytes")
        return 200, dict(response.headers), digest.hexdigest()


def check_spooled(spool, size: int, source: dict, where: str, *, empty: str) -> None:
    """The checks every file passes before it lands, whoever delivered it: not empty (``empty``
    says how), the declared encoding, the declared header."""
    if size == 0:
        raise SourceError(f"{where}: {empty}", retryable=False)
    encoding = source.get("encoding", "utf-8")
    check_encoding(spool, encoding, where)
    spool.seek(0)
    check_header(spool.read(64 * 1024), source["columns"], where, encoding)


def land_spooled(spool, pipeline: str, table: str, name: str, sha: str):
    """Write the spooled file to ``raw/<pipeline>/<table>/<landing time>__<sha prefix><suffix>``
    through a hidden staging file renamed at the end, so readers never see half a file.

    Returns the file's ``ObjectStoragePath`` and its landing time."""
    now = dt.datetime.now(dt.UTC)
    suffix = PurePosixPath(name).suffix or ".dat"
    file_name = f"{now:%Y%m%dT%H%M%S%fZ}__{sha[:16]}{suffix}"
    folder = lake_path("raw", pipeline, table)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{file_name}.tmp"
    spool.seek(0)
    with staging.open("wb") as out:
        shutil.copyfileobj(spool, out, CHUNK)
    final = folder / file_name
    staging.rename(final)
    return final, now


def write_record(pipeline: str, table: str, record: dict) -> None:
    """The table's ``_sources`` record: what landed last (read back by ``read_record``)."""
    path = source_record_path(pipeline, table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))


def fetch_to_raw(pipeline: str, source: dict, conn_id: str) -> dict:
    """Fetch one configured file into the raw layer unless it is unchanged; return what happened."""
    from airflow.providers.http.hooks.http import HttpHook

    table, name = source["table"], source["path"]
    previous = read_record(pipeline, table)
    conditional = {}
    if previous and previous.get("etag"):
        conditional["If-None-Match"] = previous["etag"]
    elif previous and previous.get("last_modified"):
        conditional["If-Modified-Since"] = previous["last_modified"]

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    with tempfile.TemporaryFile() as spool:
        status, headers, sha = _download(hook, name, conditional, name, spool)
        if status == 304:
            log.info("%s: not modified since %s (HTTP 304)", name, previous["landed_at"])
            return {**previous, "status": "unchanged"}
        size = spool.tell()
        check_spooled(spool, size, source, name, empty="the server sent an empty file")
        if previous and previous.get("sha256") == sha:
            log.info("%s: content unchanged (sha256 %s), not landed again", name, sha[:16])
            return {**previous, "status": "unchanged"}
        final, now = land_spooled(spool, pipeline, table, name, sha)

    landed = Landed(
        table=table,
        source=name,
        status="landed",
        raw_file=str(final),
        bytes=size,
        sha256=sha,
        etag=headers.get("ETag"),
        last_modified=headers.get("Last-Modified"),
        landed_at=now.isoformat(),
    )
    write_record(pipeline, table, asdict(landed))
    log.info("%s: landed %s bytes as %s", name, size, final)
    return asdict(landed)


def landed_files(pipeline: str, table: str) -> list[str]:
    """Complete raw files of a table (hidden temporary files excluded)."""
    folder = lake_path("raw", pipeline, table)
    if not folder.exists():
        return []
    return sorted(str(p) for p in folder.iterdir() if not p.name.startswith((".", "_")))
