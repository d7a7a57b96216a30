"""Lake paths for Airflow-side file I/O, through ``ObjectStoragePath`` (local or ``abfs://``)."""

from __future__ import annotations

from lakehouse import settings
from lakehouse.metadata import NAME


def layer_uri(layer: str, root: str | None = None) -> str:
    if layer not in settings.LAYERS:
        raise ValueError(f"unknown layer {layer!r}; expected one of {settings.LAYERS}")
    root = root or settings.lake_root()
    if "{layer}" in root:
        return root.format(layer=layer).rstrip("/")
    return f"{root.rstrip('/')}/{layer}"


def table_uri(layer: str, pipeline: str, table: str, root: str | None = None) -> str:
    for name in (pipeline, table.lstrip("_")):
        if not NAME.match(name):
            raise ValueError(f"invalid lake name {name!r}")
    return f"{layer_uri(layer, root)}/{pipeline}/{table}"


def lake_path(layer: str, pipeline: str, *parts: str):
    """``ObjectStoragePath`` of ``<layer>/<pipeline>/<parts...>``; local roots become file://."""
    from airflow.sdk import ObjectStoragePath

    uri = layer_uri(layer)
    if "://" not in uri:
        uri = "file://" + uri
    path = ObjectStoragePath(uri, conn_id=settings.lake_conn_id())
    return path.joinpath(pipeline, *parts)
