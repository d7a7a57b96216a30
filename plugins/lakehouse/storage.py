"""The lake on both sides: Airflow-side paths (``ObjectStoragePath``), delta-rs options, and what a
Spark session needs to reach the same lake.

The lake setting (``LAKE_ROOT``) is parsed once, by ``spark_jobs.common.lake.parse_lake_root``
(see ``settings.lake``). On Azure the Airflow connection ``LAKE_CONN_ID`` (type ``wasb`` or
``adls``, as the Azure provider reads it) is the one place that holds the account's credentials:

* Airflow side: ``ObjectStoragePath("abfs://<container>/<path>", conn_id=LAKE_CONN_ID)``. Airflow
  reads the part before ``@`` of a URI as a connection id, so the container/account URI form is
  never handed to it; the connection's account must be the one ``LAKE_ROOT`` names, if it names one.
* delta-rs (reports): storage options built from the same connection.
* Spark (local compute): the task sets the account's credentials as session settings of its own
  Spark Connect session, only for the job, and passes the lake as hadoop-azure's ABFS driver
  addresses it; against the emulator (a blob endpoint that is not ``*.blob.core.windows.net``,
  e.g. Azurite) that is plain-HTTP ``abfs://`` through the blob endpoint.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lakehouse import settings
from lakehouse.metadata import NAME

AZURE_SUFFIX = ".core.windows.net"


def _root(root: str | None):
    if root is None:
        return settings.lake()
    return settings._lake_module().parse_lake_root(root, "lake root")


def layer_uri(layer: str, root: str | None = None) -> str:
    """The layer as the lake setting writes it: a local folder or an ``abfs(s)://`` URI."""
    return _root(root).layer_uri(layer)


def table_uri(layer: str, pipeline: str, table: str, root: str | None = None) -> str:
    for name in (pipeline, table.lstrip("_")):
        if not NAME.match(name):
            raise ValueError(f"invalid lake name {name!r}")
    return f"{layer_uri(layer, root)}/{pipeline}/{table}"


def lake_path(layer: str, pipeline: str, *parts: str):
    """``ObjectStoragePath`` of ``<layer>/<pipeline>/<parts...>``: ``file://`` for a local lake,
    ``abfs://<container>/<folder>`` with ``conn_id=LAKE_CONN_ID`` for an Azure one."""
    from airflow.sdk import ObjectStoragePath

    root = settings.lake()
    if not root.is_azure:
        return ObjectStoragePath("file://" + root.layer_uri(layer)).joinpath(pipeline, *parts)
    conn_id = settings.lake_conn_id()
    key = root.key_of(layer)
    path = ObjectStoragePath(
        f"abfs://{root.container_of(layer)}" + (f"/{key}" if key else ""), conn_id=conn_id
    )
    if root.account:
        access = _access_of(_fs_of(lambda: path.fs, conn_id), conn_id)
        if access.account != root.account:
            raise ValueError(
                f"LAKE_ROOT names storage account {root.account!r}, but connection {conn_id!r} "
                f"(LAKE_CONN_ID) is for account {access.account!r}: make them agree"
            )
    return path.joinpath(pipeline, *parts)


# -- the account behind LAKE_CONN_ID ---------------------------------------------------------------


@dataclass(frozen=True)
class AzureAccess:
    """A storage account and how to reach it, from an Airflow connection (secrets never shown)."""

    account: str
    endpoint: str  # the blob endpoint: https://<account>.blob.core.windows.net/ or the emulator's
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    tenant_id: str | None = None

    @property
    def emulated(self) -> bool:
        """A blob endpoint outside Azure (an emulator such as Azurite): path-style URLs."""
        return not (urlsplit(self.endpoint).hostname or "").endswith(AZURE_SUFFIX)

    @property
    def secure(self) -> bool:
        return urlsplit(self.endpoint).scheme == "https"


def azure_access(conn_id: str | None = None) -> AzureAccess:
    """The storage account of connection ``conn_id`` (default ``LAKE_CONN_ID``), read through the
    Azure provider's own ``abfs`` filesystem, so it is the account Airflow-side I/O reaches."""
    from airflow.providers.microsoft.azure.fs.adls import get_fs

    conn_id = conn_id or settings.lake_conn_id()
    if not conn_id:
        raise ValueError("an Azure lake needs LAKE_CONN_ID, the Airflow connection of its storage account")
    return _access_of(_fs_of(lambda: get_fs(conn_id), conn_id), conn_id)


def _fs_of(build, conn_id: str):
    """The provider's filesystem for the lake connection, or an error saying what it lacks."""
    try:
        return build()
    except ValueError as exc:
        raise ValueError(
            f"connection {conn_id!r} (LAKE_CONN_ID): the Azure provider could not open the storage "
            f"account ({exc}); give it extra account_name (with an account key as password, or a "
            "service principal: login, password, extra tenant_id) or extra connection_string"
        ) from exc


def _access_of(fs, conn_id: str) -> AzureAccess:
    client = fs.service_client
    account = (client.account_name or "").lower()
    if not account:
        raise ValueError(f"connection {conn_id!r} (LAKE_CONN_ID) names no storage account")
    key, sas = fs.account_key, fs.sas_token
    if fs.connection_string:
        from azure.core.utils import parse_connection_string

        parts = parse_connection_string(fs.connection_string, case_sensitive_keys=False)
        key = parts.get("accountkey") or key
        sas = parts.get("sharedaccesssignature") or sas
    return AzureAccess(
        account=account,
        endpoint=client.url,
        account_key=key,
        sas_token=sas.lstrip("?") if sas else None,
        client_id=fs.client_id,
        client_secret=fs.client_secret,
        tenant_id=fs.tenant_id,
    )


def delta_storage_options() -> dict[str, str]:
    """delta-rs (object_store) options for the Azure lake, from the ``LAKE_CONN_ID`` connection."""
    access = azure_access()
    options = {"azure_storage_account_name": access.account}
    if access.account_key:
        options["azure_storage_account_key"] = access.account_key
    elif access.sas_token:
        options["azure_storage_sas_token"] = access.sas_token
    elif access.client_id and access.client_secret and access.tenant_id:
        options.update(
            azure_client_id=access.client_id,
            azure_client_secret=access.client_secret,
            azure_tenant_id=access.tenant_id,
        )
    if access.emulated:
        options["azure_storage_endpoint"] = access.endpoint.rstrip("/")
        if not access.secure:
            options["allow_http"] = "true"
    return options


# -- the lake as a Spark session of local compute sees it ------------------------------------------


@dataclass(frozen=True)
class SparkLake:
    """``--lake-root`` for the job, and the session settings (credentials) it needs."""

    root: str
    conf: dict[str, str] = field(default_factory=dict, repr=False)


def spark_lake(root: str) -> SparkLake:
    """The Spark side of lake root ``root`` (the ``--lake-root`` a DAG was parsed with).

    A local root is unchanged. An Azure root gets the account of ``LAKE_CONN_ID`` (adlfs-style
    ``abfs://<container>`` names none) and that account's credentials as hadoop-azure (ABFS)
    settings scoped to ``<account>.dfs.core.windows.net``; against an emulator, the blob endpoint
    over plain HTTP (``abfs://``, Azurite serves no dfs endpoint). Without ``LAKE_CONN_ID`` the
    root is passed as it is: the Spark server must then hold the credentials itself.
    """
    parsed = settings._lake_module().parse_lake_root(root, "--lake-root")
    conn_id = settings.lake_conn_id()
    if not parsed.is_azure or not conn_id:
        return SparkLake(root)
    access = azure_access(conn_id)
    if parsed.account and parsed.account != access.account:
        raise ValueError(
            f"the Spark lake root names storage account {parsed.account!r}, but connection {conn_id!r} "
            f"(LAKE_CONN_ID) is for account {access.account!r}: make them agree"
        )
    host = f"{access.account}.dfs{AZURE_SUFFIX}"
    # every FileSystem this session opens is its own: hadoop's FileSystem cache is per JVM, and a
    # cached one would carry these credentials into other sessions of the same server
    conf = {"fs.abfs.impl.disable.cache": "true", "fs.abfss.impl.disable.cache": "true"}
    if access.account_key:
        conf[f"fs.azure.account.auth.type.{host}"] = "SharedKey"
        conf[f"fs.azure.account.key.{host}"] = access.account_key
    elif access.sas_token:
        conf[f"fs.azure.account.auth.type.{host}"] = "SAS"
        conf[f"fs.azure.sas.fixed.token.{host}"] = access.sas_token
    elif access.client_id and access.client_secret and access.tenant_id:
        conf[f"fs.azure.account.auth.type.{host}"] = "OAuth"
        conf[f"fs.azure.account.oauth.provider.type.{host}"] = (
            "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"
        )
        conf[f"fs.azure.account.oauth2.client.id.{host}"] = access.client_id
        conf[f"fs.azure.account.oauth2.client.secret.{host}"] = access.client_secret
        conf[f"fs.azure.account.oauth2.client.endpoint.{host}"] = (
            f"https://login.microsoftonline.com/{access.tenant_id}/oauth2/token"
        )
    else:
        raise ValueError(
            f"connection {conn_id!r} (LAKE_CONN_ID) holds no account key, SAS token or service principal "
            "that Spark could use; add one, or unset LAKE_CONN_ID for Spark and give the server its own"
        )
    scheme = parsed.scheme if parsed.account else "abfss"
    if access.emulated:
        endpoint = urlsplit(access.endpoint)
        if endpoint.path.strip("/") != access.account or not endpoint.port:
            raise ValueError(
                f"connection {conn_id!r}: blob endpoint {access.endpoint!r} is neither Azure's nor an "
                f"emulator's http(s)://<host>:<port>/{access.account}"
            )
        scheme = "abfss" if access.secure else "abfs"
        conf.update(
            {
                # ABFS builds http(s)://<endpoint>/<account>/<container>/... from this (path style)
                f"fs.azure.abfs.endpoint.{host}": f"{endpoint.hostname}:{endpoint.port}",
                f"fs.azure.fns.account.service.type.{host}": "BLOB",
                f"fs.azure.account.hns.enabled.{host}": "false",
                # the Apache client needs TLS; the JDK's speaks plain HTTP to the emulator
                "fs.azure.networking.library": "JDK_HTTP_URL_CONNECTION",
            }
        )
        if not access.secure:
            conf["fs.azure.always.use.https"] = "false"
    return SparkLake(str(parsed.with_account(access.account, scheme)), conf)


@contextlib.contextmanager
def spark_lake_session(argv: list[str], spark) -> Iterator[tuple[list[str], object]]:
    """``(argv, spark)`` with ``--lake-root`` as Spark reaches the lake, while the session (``spark``,
    or the job's own) holds the lake's credentials; they are unset afterwards. Nothing is logged."""
    if "--lake-root" not in argv[:-1]:
        yield argv, spark
        return
    at = argv.index("--lake-root") + 1
    lake = spark_lake(argv[at])
    if not lake.conf:
        yield argv, spark
        return
    if spark is None:
        from spark_jobs.common.session import get_spark

        spark = get_spark(argv[0])
    for key, value in lake.conf.items():
        spark.conf.set(key, value)
    try:
        yield [*argv[:at], lake.root, *argv[at + 1 :]], spark
    finally:
        for key in lake.conf:
            with contextlib.suppress(Exception):  # the session may be gone (a killed job)
                spark.conf.unset(key)
