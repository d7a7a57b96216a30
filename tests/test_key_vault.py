"""Airflow reads connections and variables from Azure Key Vault (``AzureKeyVaultBackend``).

Real Airflow processes (the CLI, and a script using Airflow's models) run with
``AIRFLOW__SECRETS__BACKEND`` set to the provider's backend and its kwargs pointing at
``tests/fake_keyvault.py``, a local HTTPS stand-in for Key Vault's REST API and Entra's token
endpoint, which the real azure-keyvault-secrets and azure-identity clients talk to unchanged.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from fake_keyvault import LOGIN_HOST, FakeKeyVault

BIN = Path(sys.executable).parent
SMTP_PASSWORD = f"smtp-pw-{secrets.token_hex(8)}"
HTTP_PASSWORD = f"http-pw-{secrets.token_hex(8)}"
SMTP_CONN = {
    "conn_type": "smtp",
    "host": "smtp.example.com",
    "port": 587,
    "login": "alerts@example.com",
    "password": SMTP_PASSWORD,
    "extra": {"disable_ssl": True, "from_email": "airflow@example.com"},
}
ALERT_EMAILS = "data-oncall@example.com,lead@example.com"
SECRETS = {
    # JSON form, as the README's `az keyvault secret set` examples store it
    "airflow-connections-smtp-default": json.dumps(SMTP_CONN),
    # URI form
    "airflow-connections-netflix-http": f"http://reader:{HTTP_PASSWORD}@files.example.com:8443/netflix",
    "airflow-variables-alert-emails": ALERT_EMAILS,
    "airflow-connections-in-both-places": "http://from-key-vault.example.com",
    "airflow-variables-in-both-places": "from key vault",
}


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    with FakeKeyVault(tmp_path_factory.mktemp("keyvault"), SECRETS) as fake:
        yield fake


def _env(vault: FakeKeyVault, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AZURE_"))
    }
    return {**env, **vault.env(), **extra}


def _airflow(vault: FakeKeyVault, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "airflow"), *args], env=_env(vault, **extra), capture_output=True, text=True, check=False
    )


def _assert_authenticated(vault: FakeKeyVault, names: set[str]) -> None:
    """Every secret read carried a token the fake issued, to the service principal's client secret."""
    reads = [r for r in vault.secret_reads() if any(f"/secrets/{name}/" in r.path for name in names)]
    assert {name for name in names if any(f"/secrets/{name}/" in r.path for r in reads)} == names
    issued = set(vault.tokens)
    assert issued, "no token was issued"
    assert all(r.authorization.removeprefix("Bearer ") in issued for r in reads), reads
    token_requests = [r for r in vault.requests if r.method == "POST"]
    assert token_requests
    assert all(r.status == 200 for r in token_requests)
    assert all(
        r.form["client_id"] == vault.client_id
        and r.form["client_secret"] == vault.client_secret
        and r.form["grant_type"] == "client_credentials"
        and r.form["scope"] == "https://vault.azure.net/.default"
        for r in token_requests
    )
    # The SDK asks without a token first and follows Key Vault's 401 challenge.
    assert any(r.status == 401 and not r.authorization for r in vault.requests)
    hosts = {target.split(" ")[1].rsplit(":", 1)[0] for target in vault.tunnelled}
    assert hosts == {vault.vault_host, LOGIN_HOST}


def test_cli_reads_a_connection_and_a_variable_from_key_vault(vault, airflow_db):
    done = _airflow(vault, "connections", "get", "smtp_default", "-o", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    (conn,) = json.loads(done.stdout)
    assert conn["conn_type"] == "smtp"
    assert (conn["host"], int(conn["port"]), conn["login"]) == ("smtp.example.com", 587, "alerts@example.com")
    assert conn["password"] == SMTP_PASSWORD
    # the CLI's JSON output prints every extra as a string
    assert conn["extra_dejson"] == {key: str(value) for key, value in SMTP_CONN["extra"].items()}

    done = _airflow(vault, "variables", "get", "alert_emails")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == ALERT_EMAILS

    # underscores in the ids become dashes in the secret names
    _assert_authenticated(vault, {"airflow-connections-smtp-default", "airflow-variables-alert-emails"})


LOOKUPS = r"""
import json, sys
from airflow.exceptions import AirflowNotFoundException
from airflow.models import Connection, Variable
from airflow.utils.session import create_session

def conn(conn_id):
    try:
        c = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException as exc:
        return {"not_found": str(exc)}
    return {"type": c.conn_type, "host": c.host, "login": c.login, "password": c.password,
            "port": c.port, "schema": c.schema}

def var(key):
    try:
        return Variable.get(key)
    except KeyError as exc:
        return {"not_found": str(exc)}

db_id = sys.argv[1]
with create_session() as session:
    session.add(Connection(conn_id=db_id, conn_type="http", host="from-metadata-db.example.com"))
try:
    out = {
        "netflix_http": conn("netflix_http"),
        "in_both_places": conn("in_both_places"),
        "env_only": conn("env_only"),
        "db_only": conn(db_id),
        "nowhere": conn("nowhere_at_all"),
        "var_in_both_places": var("in_both_places"),
        "var_env_only": var("env_only"),
        "var_nowhere": var("nowhere_at_all"),
    }
finally:
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == db_id).delete()
print("RESULT " + json.dumps(out))
"""


def test_key_vault_first_then_environment_then_metadata_db(vault, airflow_db):
    """Airflow's documented search order with a secrets backend: the backend, then
    ``AIRFLOW_CONN_``/``AIRFLOW_VAR_`` variables, then the metadata DB. A secret Key Vault does
    not hold (its 404) falls through; one it holds wins over the environment."""
    db_id = f"kv_db_only_{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "-c", LOOKUPS, db_id],
        env=_env(
            vault,
            AIRFLOW_CONN_IN_BOTH_PLACES="http://from-environment.example.com",
            AIRFLOW_CONN_ENV_ONLY="http://from-environment.example.com",
            AIRFLOW_VAR_IN_BOTH_PLACES="from the environment",
            AIRFLOW_VAR_ENV_ONLY="from the environment",
            _AIRFLOW_PROCESS_CONTEXT="server",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])

    assert result["netflix_http"] == {  # the URI form
        "type": "http",
        "host": "files.example.com",
        "login": "reader",
        "password": HTTP_PASSWORD,
        "port": 8443,
        "schema": "netflix",
    }
    assert result["in_both_places"]["host"] == "from-key-vault.example.com"
    assert result["env_only"]["host"] == "from-environment.example.com"
    assert result["db_only"]["host"] == "from-metadata-db.example.com"
    assert "nowhere_at_all" in result["nowhere"]["not_found"]
    assert result["var_in_both_places"] == "from key vault"
    assert result["var_env_only"] == "from the environment"
    assert "nowhere_at_all" in result["var_nowhere"]["not_found"]

    # Key Vault was asked first for each, and answered the missing ones with its 404.
    missing = {
        "airflow-connections-env-only",
        f"airflow-connections-{db_id.replace('_', '-')}",
        "airflow-connections-nowhere-at-all",
        "airflow-variables-env-only",
        "airflow-variables-nowhere-at-all",
    }
    statuses = {
        name: {r.status for r in vault.secret_reads() if f"/secrets/{name}/" in r.path} for name in missing
    }
    assert statuses == {key: {404} for key in missing}
    _assert_authenticated(vault, missing | {"airflow-connections-netflix-http"})


def test_the_fake_checks_what_it_is_sent(vault):
    """A forged token, a wrong client secret and a missing api-version are refused (so the tests
    above prove the issued token was used); a secret is also served by its version, as Key Vault
    does, and not by another."""
    name = "airflow-variables-alert-emails"
    status, _body, headers = vault.vault_get(
        vault.vault_host, f"/secrets/{name}/?api-version=7.6", "Bearer forged"
    )
    assert status == 401
    assert "resource=" in headers["WWW-Authenticate"]
    status, _ = vault.token(
        f"/{vault.tenant_id}/oauth2/v2.0/token",
        {"grant_type": "client_credentials", "client_id": vault.client_id, "client_secret": "wrong"},
    )
    assert status == 401
    assert vault.vault_get(vault.vault_host, f"/secrets/{name}/", "")[0] == 400
    status, token = vault.token(
        f"/{vault.tenant_id}/oauth2/v2.0/token",
        {
            "grant_type": "client_credentials",
            "client_id": vault.client_id,
            "client_secret": vault.client_secret,
            "scope": "https://vault.azure.net/.default",
        },
    )
    assert status == 200
    bearer = f"Bearer {token['access_token']}"
    version = vault.secrets[name][0]
    status, body, _ = vault.vault_get(vault.vault_host, f"/secrets/{name}/{version}?api-version=7.6", bearer)
    assert (status, body["value"]) == (200, ALERT_EMAILS)
    assert body["id"].endswith(f"/secrets/{name}/{version}")
    other = "0" * 32
    status, body, _ = vault.vault_get(vault.vault_host, f"/secrets/{name}/{other}?api-version=7.6", bearer)
    assert (status, body["error"]["code"]) == (404, "SecretNotFound")
