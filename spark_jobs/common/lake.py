"""Where a table lives: ``<layer>/<pipeline>/<table>`` under a lake root.

A local root is a folder holding one sub-folder per layer. An Azure root names the layer as a
placeholder, because there each layer is its own ADLS Gen2 container:
``abfss://{layer}@account.dfs.core.windows.net``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LAYERS = ("raw", "bronze", "silver", "gold")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_name(kind: str, value: str) -> str:
    """Reject names that could escape the lake layout (slashes, dots, upper case, blanks)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"invalid {kind} name {value!r}: use lower-case letters, digits and '_'")
    return value


@dataclass(frozen=True)
class Lake:
    root: str

    def layer_uri(self, layer: str) -> str:
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")
        if "{layer}" in self.root:
            return self.root.format(layer=layer).rstrip("/")
        return f"{self.root.rstrip('/')}/{layer}"

    def uri(self, layer: str, pipeline: str, *parts: str) -> str:
        check_name("pipeline", pipeline)
        for part in parts:
            check_name("table", part.lstrip("_"))
        return "/".join([self.layer_uri(layer), pipeline, *parts])
