"""Formula 1 processed layer: one drop's sources, replaced or merged into silver tables.

All required sources are checked before anything is written. A table records, in its commit
metadata, the drop it last applied (date and a fingerprint of the files), so re-running a drop
changes nothing, and a late, older drop never replaces or overwrites what a newer one wrote.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from spark_jobs.common import delivery, drops, quarantine
from spark_jobs.common.errors import ConflictingDuplicatesError
from spark_jobs.common.files import FileInfo, list_files
from spark_jobs.common.job import SILVER_PROPERTIES, Job, start
from spark_jobs.formula1 import transforms as tf

log = logging.getLogger(__name__)


def drop_folder(job: Job) -> str:
    return f"{job.lake.layer_uri('raw')}/{job.pipeline}/{job.file_date}"


def drop_uri(job: Job, spec: dict) -> str:
    return f"{drop_folder(job)}/{spec['path']}"


def drop_files(job: Job) -> dict[str, list[FileInfo]]:
    """The drop's files by their path inside the drop folder (one listing for every source)."""
    marker = f"/{job.pipeline}/{job.file_date}/"
    return {f.path[f.path.index(marker) + len(marker) :]: f for f in list_files(job.spark, drop_folder(job))}


def source_files(spec: dict, files: dict) -> list:
    """The files of one source: the file at its path, or the files in the folder at its path."""
    path = spec["path"].strip("/")
    return [f for relative, f in sorted(files.items()) if relative == path or relative.startswith(path + "/")]


def fingerprint(files: list) -> list[list]:
    """(name, size, modification time in ms) of every file of a source: changes when a drop does."""
    return sorted([f.name, f.size, f.modified_ms] for f in files)


def present_sources(job: Job, files: dict) -> list[dict]:
    """The sources found in the drop; fails, naming them, if required ones are missing."""
    found, missing = [], []
    for spec in job.config["sources"]:
        if not job.wants(spec["table"]):
            continue
        if source_files(spec, files):
            found.append(spec)
        elif spec.get("required", True):
            missing.append(spec["path"])
        else:
            log.warning("drop %s has no %s (optional): skipped", job.file_date, spec["path"])
            job.count("silver", spec["table"], "optional_source_missing", 1)
    if missing:
        raise drops.MissingSourceError(
            f"drop {job.file_date} is missing required file(s): {', '.join(missing)} "
            f"in {drop_folder(job)}; nothing was written"
        )
    return found


def applied_stamps(job: Job, uri: str) -> list[dict]:
    return [c.metadata.get("drop") for c in job.engine.history(uri) if c.metadata.get("drop")]


@dataclass
class Prepared:
    """One source of the drop, read, checked and processed: what phase two writes."""

    spec: dict
    stamp: dict
    clean: object  # DataFrame, materialised
    rows: int
    quarantined: object | None = None  # DataFrame of quarantine rows, or None


CONFLICT = "conflicting duplicate key"
EXAMPLE_KEYS = 5


def prepare_source(job: Job, spec: dict, stamp: dict, files: list[FileInfo]) -> Prepared | None:
    """Read, check and process one source; None when the drop is already applied (or older)."""
    table, uri = spec["table"], job.uri("silver", spec["table"])
    stamps = applied_stamps(job, uri)
    if stamp in stamps:
        log.info("silver.%s already has drop %s: unchanged", table, job.file_date)
        return None
    newest = max((s["file_date"] for s in stamps), default=None)
    if spec["write"] == "replace" and newest and newest > job.file_date:
        log.info("silver.%s holds drop %s, newer than %s: not replaced", table, newest, job.file_date)
        return None

    delivered = drops.read_source(job.spark, drop_uri(job, spec), spec)
    json_file = spec["format"] == "json"
    checked = delivery.check(
        job.spark,
        delivered,
        table=f"silver.{table} (drop {job.file_date})",
        files=[f.path for f in files],
        spec=spec,
        json_lines=json_file and not spec.get("multiline", False),
        whole_file_json=json_file and bool(spec.get("multiline", False)),
    )
    clean = tf.processed(delivered.drop(delivery.FILE_COLUMN), spec, job.config.get("null_markers", []))
    keys = spec.get("keys")
    quarantined = None
    job.count("silver", table, "rows_read", checked.rows)
    job.count("silver", table, "rows_rescued", checked.rescued)
    if checked.empty_files:
        job.count("silver", table, "empty_files", len(checked.empty_files))
    if keys:
        clean = clean.localCheckpoint(eager=True)
        distinct = clean.dropDuplicates().count()
        job.count("silver", table, "duplicates_removed", checked.rows - checked.rescued - distinct)
        order_by = (spec.get("tie_break") or {}).get("order_by")
        clean, conflicting = tf.deduplicate(clean, keys, order_by)
        conflicting = conflicting.localCheckpoint(eager=True)
        conflict_rows = conflicting.count()
        if conflict_rows:
            examples = [
                r["_key"] for r in conflicting.select("_key").distinct().limit(EXAMPLE_KEYS).collect()
            ]
            conflict_keys = conflicting.select("_key").distinct().count()
            what = (
                f"silver.{table} (drop {job.file_date}): {conflict_keys} key(s) of {keys} have rows with "
                f"different values (e.g. {', '.join(sorted(examples))})"
            )
            if not spec.get("quarantine", False):
                rule = "its tie_break does not order them" if order_by else "no tie_break is declared"
                raise ConflictingDuplicatesError(
                    f"{what} and {rule}: declare tie_break or quarantine for this source, or fix the "
                    f"file(s) {', '.join(sorted({f.name for f in files}))}; nothing was written"
                )
            log.warning("%s: their %s rows go to quarantine", what, conflict_rows)
            quarantined = quarantine.rows(conflicting, table, CONFLICT, job.file_date, job.run_id)
            job.count("silver", table, "rows_quarantined", conflict_rows)
        clean = clean.localCheckpoint(eager=True)
        if order_by:
            # rows that lost to another row of their key by the declared tie-break
            job.count("silver", table, "rows_tie_broken", distinct - clean.count() - conflict_rows)
    clean = tf.with_drop(clean, job.file_date).localCheckpoint(eager=True)
    rows = clean.count()
    return Prepared(spec=spec, stamp=stamp, clean=clean, rows=rows, quarantined=quarantined)


def write_source(job: Job, item: Prepared) -> None:
    spec, table = item.spec, item.spec["table"]
    uri = job.uri("silver", table)
    keys = spec.get("keys")
    metadata = {"drop": item.stamp, "run_id": job.run_id, "job": job.name}
    if spec["write"] == "merge":
        result = job.engine.merge(
            item.clean,
            uri,
            keys,
            metadata=metadata,
            newer_by="file_date",
            partition_by=spec.get("partition_by"),
            properties=SILVER_PROPERTIES,
            prune_by=[c for c in spec.get("partition_by") or [] if c in keys],
        )
        job.count("silver", table, "rows_inserted", result["inserted"])
        job.count("silver", table, "rows_updated", result["updated"])
    else:
        job.engine.overwrite(item.clean, uri, metadata=metadata, properties=SILVER_PROPERTIES)
        job.count("silver", table, "rows_written", item.rows)


def main(argv: list[str]) -> None:
    job = start("formula1.silver", argv)
    if not job.file_date:
        raise SystemExit("formula1.silver needs --file-date")
    files = drop_files(job)

    def prepare(spec: dict) -> Prepared | None:
        mine = source_files(spec, files)
        stamp = {"file_date": job.file_date, "files": fingerprint(mine)}
        return prepare_source(job, spec, stamp, mine)

    # Every source is read and checked before anything is written: one bad file writes nothing.
    prepared = [p for p in job.for_each(present_sources(job, files), prepare) if p is not None]
    quarantine.write(job, "silver", [p.quarantined for p in prepared if p.quarantined is not None])
    job.for_each(prepared, lambda item: write_source(job, item))
    job.write_audit()
