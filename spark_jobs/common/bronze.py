"""Bronze for file sources: every configured file's new raw files, appended with lineage."""

from __future__ import annotations

import logging

from spark_jobs.common.autoloader import SourceFileError, ingest_new_files, source_exists

log = logging.getLogger(__name__)


def ingest_sources(job) -> None:
    """Ingest each source in ``config['files']`` from ``raw/<pipeline>/<table>/``."""
    for source in job.config["files"]:
        table = source["table"]
        if not job.wants(table):
            continue
        source_dir = job.lake.uri("raw", job.pipeline, table)
        if not source_exists(source_dir):
            if source.get("required", True):
                raise SourceFileError(f"bronze.{table}: no file has landed in {source_dir}")
            log.warning("bronze.%s: optional source has no files in %s; skipped", table, source_dir)
            continue
        result = ingest_new_files(job, table, source_dir, source["columns"], source.get("options", {}))
        if result.batches_written:
            job.count("bronze", table, "files_ingested", len(result.files))
            job.count("bronze", table, "rows_ingested", result.rows)
            job.count("bronze", table, "rows_rescued", result.rescued)
        else:
            log.info("bronze.%s: no new files", table)
    job.write_audit()
