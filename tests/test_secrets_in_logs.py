"""No secret in task logs, rendered template fields, the metadata DB or the repository.

One real run of the Netflix DAG by a real Airflow (``airflow standalone``: scheduler, LocalExecutor,
the task supervisor writing each task's log file under ``$AIRFLOW_HOME/logs``), with its two
password-bearing connections served by Azure Key Vault (``tests/fake_keyvault.py``) and nowhere
else: ``netflix_http`` (a file server that refuses requests without its basic-auth password) and
``smtp_default`` (an SMTP server that refuses mail without its AUTH password). One file answers 404,
so that fetch fails without retry and its failure callback sends the alert through
``smtp_default``; nothing downstream runs, so no Spark is needed. Each password, the Key Vault
service principal's client secret and the tokens the vault's login endpoint issued are unique
markers; the test then looks for them everywhere the run wrote.
"""

from __future__ import annotations

import base64
import email
import http.server
import json
import re
import secrets
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from airflow_server import ROOT, AirflowServer
from fake_keyvault import FakeKeyVault
from smtp_inbox import html_body

from lakehouse.ports import free_port
from lakehouse.sample_data import write_netflix_sample

pytestmark = pytest.mark.e2e
aiosmtpd = pytest.importorskip("aiosmtpd.controller", reason="aiosmtpd is needed for a local SMTP server")
from aiosmtpd.smtp import AuthResult  # noqa: E402

FAILING_FILE = "netflix_directors.csv"


class _Files(http.server.ThreadingHTTPServer):
    """The Netflix files behind HTTP basic auth; one file answers 404."""

    daemon_threads = True

    def __init__(self, root: Path, login: str, password: str):
        super().__init__(("127.0.0.1", 0), _FilesHandler)
        self.root = root
        self.expected = "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
        self.requests: list[tuple[str, bool]] = []  # path, authorised


class _FilesHandler(http.server.BaseHTTPRequestHandler):
    server: _Files

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        authorised = self.headers.get("Authorization") == self.server.expected
        self.server.requests.append((self.path, authorised))
        name = self.path.split("?", 1)[0].removeprefix("/netflix/")
        if not authorised:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="netflix"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.server.root / name
        if name == FAILING_FILE or "/" in name or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Mailbox:
    def __init__(self, login: str, password: str):
        self.credentials = (login.encode(), password.encode())
        self.logins: list[tuple[bytes, bool]] = []
        self.messages: list[email.message.Message] = []

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) == self.credentials
        self.logins.append((auth_data.login, ok))
        return AuthResult(success=ok)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


def _files_with(folder: Path, markers: list[str]) -> dict[str, list[str]]:
    """Files under ``folder`` (any depth) containing any marker: path -> markers found."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            hits = [m for m in markers if m in text]
            if hits:
                found[str(path)] = hits
    return found


def _metadata_rows(server: AirflowServer) -> dict[str, list[str]]:
    """Every row of every table of the server's metadata DB, as text, by table."""
    if server.database:
        import psycopg2
        from airflow_server import _pg

        conn = psycopg2.connect(dbname=server.database, **_pg())
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
                )
                tables = [row[0] for row in cursor.fetchall()]
                rows = {}
                for table in tables:
                    cursor.execute(f'SELECT CAST(t AS text) FROM "{table}" t')
                    rows[table] = [row[0] for row in cursor.fetchall()]
        finally:
            conn.close()
        return rows
    conn = sqlite3.connect(server.home / "airflow.db")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [repr(row) for row in conn.execute(f'SELECT * FROM "{t}"')] for t in tables}
    finally:
        conn.close()


# aiosmtpd warns that it takes AUTH without TLS: this SMTP server listens on 127.0.0.1 only.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_real_run_with_key_vault_connections_leaks_no_secret(tmp_path, monkeypatch):
    http_password = f"http-pw-{secrets.token_hex(10)}"
    smtp_password = f"smtp-pw-{secrets.token_hex(10)}"
    source = tmp_path / "source"
    write_netflix_sample(source, titles=20, seed=3)
    files = _Files(source, "netflix-reader", http_password)
    mailbox = _Mailbox("alerts@example.com", smtp_password)
    smtp_port = free_port()
    smtp = aiosmtpd.Controller(
        mailbox,
        hostname="127.0.0.1",
        port=smtp_port,
        authenticator=mailbox.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    netflix_http = {
        "conn_type": "http",
        "host": f"http://127.0.0.1:{files.server_address[1]}/netflix/",
        "login": "netflix-reader",
        "password": http_password,
    }
    smtp_default = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp_port,
        "login": "alerts@example.com",
        "password": smtp_password,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"},
    }
    vault = FakeKeyVault(
        tmp_path / "keyvault",
        {
            "airflow-connections-netflix-http": json.dumps(netflix_http),
            "airflow-connections-smtp-default": json.dumps(smtp_default),
        },
    ).start()
    # The connections exist in Key Vault only.
    for name in ("AIRFLOW_CONN_NETFLIX_HTTP", "AIRFLOW_CONN_SMTP_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    lake = tmp_path / "lake"
    server = AirflowServer(
        tmp_path / "airflow",
        {
            **vault.env(),
            "LAKE_ROOT": str(lake),
            "LAKEHOUSE_RETRIES": "0",
            "ALERT_EMAILS": "data-oncall@example.com",
            "ALERT_FROM": "airflow@example.com",
            # what a deployment logs (the tests' default is WARNING)
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        },
    )
    threading.Thread(target=files.serve_forever, daemon=True).start()
    smtp.start()
    try:
        server.start()
        server.wait_for_dag("netflix")
        # Unpaused (catchup=False), the scheduler starts one run for the schedule's latest day.
        server.unpause("netflix")
        runs = server.wait_for_runs(
            "netflix",
            lambda runs: runs and all(r["state"] in ("success", "failed") for r in runs),
            timeout=600,
        )
        assert len(runs) == 1, runs
        (run,) = runs
        states = server.task_states("netflix", run["run_id"])
        rows = _metadata_rows(server)  # before stop() drops the database
    finally:
        server.stop()
        vault.stop()
        smtp.stop()
        files.shutdown()
        files.server_close()

    # The run used both connections, read from Key Vault with the tokens it issued.
    assert run["state"] == "failed", states
    fetches = {k: v for k, v in states.items() if k.startswith("fetch_http_file[")}
    assert sorted(fetches.values()) == ["failed"] + ["success"] * 4, states
    assert states["titles_landed"] == "upstream_failed", states
    assert len(files.requests) == 5
    assert all(authorised for _, authorised in files.requests), files.requests
    assert len(mailbox.messages) == 1, mailbox.logins
    assert mailbox.logins == [(b"alerts@example.com", True)]
    assert vault.names_read() == {"airflow-connections-netflix-http", "airflow-connections-smtp-default"}
    assert all(r.authorization.removeprefix("Bearer ") in vault.tokens for r in vault.secret_reads())

    markers = [http_password, smtp_password, vault.client_secret, *vault.tokens]

    # Task logs: one file per fetch, the failed one saying why, and no marker in any file the run wrote.
    logs = sorted(p for p in (server.home / "logs").rglob("*") if p.is_file() and "dag_id=netflix" in str(p))
    fetch_logs = [p for p in logs if "task_id=fetch_http_file" in str(p)]
    assert len(fetch_logs) == 5, logs
    texts = [p.read_text(errors="replace") for p in fetch_logs]
    assert sum(f"{FAILING_FILE}: HTTP 404" in text for text in texts) == 1, texts
    assert sum("landed" in text for text in texts) >= 4, texts
    # each task process authenticated to Key Vault itself (azure-identity logs that, at INFO)
    assert all("ClientSecretCredential.get_token_info succeeded" in text for text in texts), texts
    assert _files_with(server.home, markers) == {}
    assert _files_with(lake, markers) == {}

    # Rendered template fields and the whole metadata DB (DAG code, XComs, connections, variables).
    rendered = [r for r in rows["rendered_task_instance_fields"] if run["run_id"] in r]
    assert len(rendered) >= 5, rendered
    assert all("netflix_http" in r for r in rendered if "fetch_http_file" in r)
    leaks = {table: [r for r in found if any(m in r for m in markers)] for table, found in rows.items()}
    assert {table: found for table, found in leaks.items() if found} == {}

    # The alert email itself.
    message = mailbox.messages[0]
    body = message["Subject"] + html_body(message)
    assert FAILING_FILE in body
    assert not [m for m in markers if m in body]

    # Nothing of this run reached the repository's files.
    grep = subprocess.run(
        ["git", "grep", "--untracked", "-I", "-l", "-F", *[x for m in markers for x in ("-e", m)]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert grep.returncode == 1, grep.stdout or grep.stderr  # 1: no match


# Credentials that must never be committed. Values of fewer than 6 characters are test dummies
# ("p"), not credentials. Allowed, being public: the Azurite emulator's account key (Azurite's and
# Microsoft's docs publish it), and docker-compose.yaml's laptop-only metadata DB account (the
# official Airflow compose file's airflow/airflow; that PostgreSQL publishes no port).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PUBLIC = {AZURITE_KEY: "<azurite key>", "postgresql+psycopg2://airflow:airflow@postgres/": "<compose db>"}
CREDENTIAL_PATTERNS = {
    "storage account key": r"[A-Za-z0-9+/]{86}==",
    "AccountKey value": r"AccountKey=[A-Za-z0-9+/]{20,}",
    "SAS signature": r"[?&]sig=[A-Za-z0-9%+/]{20,}",
    "Databricks token": r"\bdapi[0-9a-f]{32}\b",
    "private key": r"-----BEGIN (?:RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----",
    "password in a connection": r"\"password\"\s*:\s*\"(?!<)[^\"${}]{6,}\"",
    "password in a URI": r"[a-z0-9+]+://[^\s:/@\"'<>]+:(?!<)[^\s@/\"'<>{}$]+@[a-z0-9.-]+",
    "client secret": r"client_secret\"?\s*[:=]\s*\"(?!<)[^\"${}]{8,}\"",
}


def test_the_repository_holds_no_credential():
    """Tracked and new files hold placeholders (``<password>``) where a credential goes.

    Test code builds its secrets at run time (random markers, generated keys), so a literal
    credential in the repository is a leak or a fixture to rewrite.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    patterns = {name: re.compile(pattern) for name, pattern in CREDENTIAL_PATTERNS.items()}
    found = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file() or path.suffix in {".csv", ".parquet", ".jar", ".lock"}:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for public, placeholder in PUBLIC.items():
            text = text.replace(public, placeholder)
        for kind, pattern in patterns.items():
            found += [f"{name.decode()}: {kind}: {m.group(0)[:60]}" for m in pattern.finditer(text)]
    assert found == [], "\n".join(found)


def test_the_credential_scan_finds_what_it_looks_for():
    # Built at run time, so that this file does not hold what the scan above looks for.
    value = secrets.token_hex(6)
    samples = {
        "storage account key": "AccountKey=" + "A" * 86 + "==",
        "SAS signature": "https://a.blob.core.windows.net/c?sv=2024&" + "sig=" + "x" * 20 + value,
        "Databricks token": "dapi" + secrets.token_hex(16),
        "private key": "-----BEGIN " + "PRIVATE KEY-----",
        "password in a connection": json.dumps({"conn_type": "smtp", "password": value}),
        "password in a URI": f"postgresql://airflow:{value}" + "@db.example.com/airflow",
        "client secret": json.dumps({"client_secret": f"abc~{value}"}),
    }
    for kind, sample in samples.items():
        assert re.search(CREDENTIAL_PATTERNS[kind], sample), kind
    placeholders = [
        '{"password": "<password>"}',
        "postgresql://<user>:<password>@<server>/db",
        '"client_secret": "<client secret>"',
        f"AccountKey={AZURITE_KEY}".replace(AZURITE_KEY, "<azurite key>"),
    ]
    for sample in placeholders:
        assert not any(re.search(p, sample) for p in CREDENTIAL_PATTERNS.values()), sample
