"""Where a table lives: ``<layer>/<pipeline>/<table>`` under a lake root.

One parser (``parse_lake_root``) reads the lake setting for both sides: the Airflow side
(``plugins/lakehouse/settings.py``, ``storage.py``) and the Spark jobs (``--lake-root``). It
accepts exactly these forms and refuses anything else, saying what to write:

* a local folder (``/data/lake``) or ``file:///data/lake``: one sub-folder per layer;
* ``abfss://<container>@<account>.dfs.core.windows.net[/prefix]``: one ADLS Gen2 container,
  the layers as folders in it;
* ``abfss://{layer}@<account>.dfs.core.windows.net[/prefix]``: a container per layer;
* ``abfs://`` with the same host (Hadoop's plain-HTTP form: Spark against the emulator);
* ``abfs://<container>[/prefix]`` and ``abfs://{layer}[/prefix]``: adlfs style, the account
  comes from the Airflow connection ``LAKE_CONN_ID``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

LAYERS = ("raw", "bronze", "silver", "gold")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._=+-]+$")
DFS_SUFFIX = ".dfs.core.windows.net"
LAYER = "{layer}"

FORMS = (
    "a local folder (/data/lake or file:///data/lake), "
    "abfss://<container>@<account>.dfs.core.windows.net[/prefix], "
    "abfss://{layer}@<account>.dfs.core.windows.net[/prefix] (a container per layer), "
    "or abfs://<container>[/prefix] / abfs://{layer}[/prefix] (account from the LAKE_CONN_ID connection)"
)


def check_name(kind: str, value: str) -> str:
    """Reject names that could escape the lake layout (slashes, dots, upper case, blanks)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"invalid {kind} name {value!r}: use lower-case letters, digits and '_'")
    return value


@dataclass(frozen=True)
class LakeRoot:
    """A parsed lake setting. ``container`` is None for a local lake and ``{layer}`` for a
    container per layer; ``account`` is None for a local lake and for adlfs-style ``abfs://``."""

    scheme: str  # "file", "abfs" or "abfss"
    path: str  # local: the folder; Azure: the prefix inside the container ("" or "a/b")
    container: str | None = None
    account: str | None = None

    @property
    def is_azure(self) -> bool:
        return self.scheme != "file"

    @property
    def per_layer(self) -> bool:
        return self.container == LAYER

    @property
    def host(self) -> str | None:
        """``<account>.dfs.core.windows.net``, when the setting names the account."""
        return f"{self.account}{DFS_SUFFIX}" if self.account else None

    def container_of(self, layer: str) -> str:
        _check_layer(layer)
        return layer if self.per_layer else self.container

    def key_of(self, layer: str) -> str:
        """The layer's folder inside its container ("" for a container per layer, no prefix)."""
        _check_layer(layer)
        parts = [p for p in (self.path, None if self.per_layer else layer) if p]
        return "/".join(parts)

    def layer_uri(self, layer: str) -> str:
        """The layer as this setting writes it: a local folder, or an ``abfs(s)://`` URI."""
        _check_layer(layer)
        if not self.is_azure:
            return f"{self.path.rstrip('/')}/{layer}"
        authority = self.container_of(layer) + (f"@{self.host}" if self.account else "")
        key = self.key_of(layer)
        return f"{self.scheme}://{authority}" + (f"/{key}" if key else "")

    def with_account(self, account: str, scheme: str | None = None) -> LakeRoot:
        """The same lake with the account named (and, for Spark, the scheme chosen)."""
        if self.account and self.account != account:
            raise ValueError(f"lake root names account {self.account!r}, not {account!r}")
        return LakeRoot(scheme or self.scheme, self.path, self.container, account)

    def __str__(self) -> str:
        if not self.is_azure:
            return self.path
        authority = self.container + (f"@{self.host}" if self.account else "")
        return f"{self.scheme}://{authority}" + (f"/{self.path}" if self.path else "")


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; expected one of {LAYERS}")


def parse_lake_root(value: str, setting: str = "LAKE_ROOT") -> LakeRoot:
    """The lake setting ``value`` parsed, or a ValueError naming ``setting`` and what to write."""

    def refuse(why: str) -> ValueError:
        return ValueError(f"{setting}={value!r}: {why}. Write {FORMS}")

    if not isinstance(value, str) or not value.strip():
        raise refuse("empty")
    text = value.strip()
    placeholders = set(re.findall(r"\{[^}]*\}", text))
    if placeholders - {LAYER} or text.count("{") != text.count("}"):
        unknown = sorted(placeholders - {LAYER}) or ["an unbalanced brace"]
        raise refuse(f"unknown placeholder {', '.join(unknown)} (only {LAYER} is known)")
    scheme, sep, rest = text.partition("://")
    if not sep:
        if ":" in text.split("/", 1)[0] and not text.startswith("/"):
            raise refuse(f"unsupported URI {text.split('/', 1)[0]!r}")
        return _local(text, refuse)
    scheme = scheme.lower()
    if scheme == "file":
        if not rest.startswith("/"):
            raise refuse("a file:// URI needs an absolute path (file:///data/lake)")
        return _local(unquote(rest), refuse)
    if scheme in ("wasb", "wasbs"):
        raise refuse(
            f"{scheme}:// (the blob endpoint driver) is not supported: Airflow's Azure provider does not "
            "register it and hadoop-azure 3.5 removed it; use the abfss:// form of the same container"
        )
    if scheme not in ("abfs", "abfss"):
        raise refuse(f"unsupported scheme {scheme}://")
    if any(c in rest for c in "?#\\ "):
        raise refuse("no query, fragment, backslash or blank is allowed")
    authority, _, path = rest.partition("/")
    container, at, host = authority.partition("@")
    if LAYER in path:
        raise refuse(f"{LAYER} must be the container (before '@'), not in the path")
    if not at and ("." in container or ":" in container):
        raise refuse(
            "the container comes first: abfs://<container>[/prefix] "
            "or abfs://<container>@<account>.dfs.core.windows.net"
        )
    if container != LAYER and not _CONTAINER.match(container):
        raise refuse(
            f"container {container!r} is not a valid container name "
            "(3-63 lower-case letters, digits and single hyphens) or {layer}"
        )
    account = None
    if at:
        if not host.lower().endswith(DFS_SUFFIX):
            raise refuse(f"host {host!r} is not an ADLS Gen2 endpoint <account>{DFS_SUFFIX}")
        account = host[: -len(DFS_SUFFIX)].lower()
        if not _ACCOUNT.match(account):
            raise refuse(
                f"account {account!r} is not a storage account name (3-24 lower-case letters, digits)"
            )
    elif scheme == "abfss":
        raise refuse(
            "abfss:// needs the account: abfss://<container>@<account>.dfs.core.windows.net, or "
            "abfs://<container> with the account in the LAKE_CONN_ID connection"
        )
    prefix = path.strip("/")
    if prefix:
        for segment in prefix.split("/"):
            if not _SEGMENT.match(segment) or segment in (".", ".."):
                raise refuse(f"invalid path segment {segment!r}")
    return LakeRoot(scheme, prefix, container, account)


def _local(path: str, refuse) -> LakeRoot:
    if LAYER in path:
        raise refuse(f"a local lake has a folder per layer; {LAYER} is only for Azure containers")
    if any(part == ".." for part in path.split("/")):
        raise refuse("'..' is not allowed in the lake path")
    path = path.rstrip("/") or "/"
    return LakeRoot("file", path)


@dataclass(frozen=True)
class Lake:
    root: str

    def __post_init__(self):
        object.__setattr__(self, "parsed", parse_lake_root(self.root, "--lake-root"))

    def layer_uri(self, layer: str) -> str:
        return self.parsed.layer_uri(layer)

    def uri(self, layer: str, pipeline: str, *parts: str) -> str:
        check_name("pipeline", pipeline)
        for part in parts:
            check_name("table", part.lstrip("_"))
        return "/".join([self.layer_uri(layer), pipeline, *parts])
