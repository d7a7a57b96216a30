"""Formula 1 processed layer: one drop's sources, replaced or merged into silver tables.

All required sources are checked before anything is written. A table records, in its commit
metadata, the drop it last applied (date and a fingerprint of the files), so re-running a drop
changes nothing, and a late, older drop never replaces or overwrites what a newer one wrote.
"""

from __future__ import annotations

import logging

from spark_jobs.common import drops
from spark_jobs.common.files import RESCUED, FileInfo, list_files
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


def apply_source(job: Job, spec: dict, stamp: dict) -> None:
    table, uri = spec["table"], job.uri("silver", spec["table"])
    stamps = applied_stamps(job, uri)
    if stamp in stamps:
        log.info("silver.%s already has drop %s: unchanged", table, job.file_date)
        return
    newest = max((s["file_date"] for s in stamps), default=None)
    if spec["write"] == "replace" and newest and newest > job.file_date:
        log.info("silver.%s holds drop %s, newer than %s: not replaced", table, newest, job.file_date)
        return

    delivered = drops.read_source(job.spark, drop_uri(job, spec), spec)
    rows_read = delivered.count()
    rescued = delivered.filter(delivered[RESCUED].isNotNull()).count()
    clean = tf.processed(delivered, spec, job.config.get("null_markers", []))
    keys = spec.get("keys")
    if keys:
        clean = tf.deduplicate(clean, keys)
    clean = tf.with_drop(clean, job.file_date).localCheckpoint(eager=True)
    rows = clean.count()
    job.count("silver", table, "rows_read", rows_read)
    job.count("silver", table, "rows_rescued", rescued)
    job.count("silver", table, "duplicates_removed", rows_read - rescued - rows)
    metadata = {"drop": stamp, "run_id": job.run_id, "job": job.name}
    if spec["write"] == "merge":
        result = job.engine.merge(
            clean,
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
        job.engine.overwrite(clean, uri, metadata=metadata, properties=SILVER_PROPERTIES)
        job.count("silver", table, "rows_written", rows)


def main(argv: list[str]) -> None:
    job = start("formula1.silver", argv)
    if not job.file_date:
        raise SystemExit("formula1.silver needs --file-date")
    files = drop_files(job)

    def apply(spec: dict) -> None:
        stamp = {"file_date": job.file_date, "files": fingerprint(source_files(spec, files))}
        apply_source(job, spec, stamp)

    job.for_each(present_sources(job, files), apply)
    job.write_audit()
