"""A local HTTP file server for the demo and the tests, on 127.0.0.1 only.

Serves a folder with strong ETags (a hash of the content) and honours ``If-None-Match`` and
``If-Modified-Since``, as GitHub's raw file server does. Tests can make a path fail on purpose:
``server.faults["netflix_cast.csv"] = 404`` (any status), or ``"truncate"`` to announce the full
length and then close the connection halfway.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import threading
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # quiet: the tests and demo print what matters
        self.server.requests.append(self.path)

    def do_GET(self):
        name = self.path.split("?", 1)[0].lstrip("/")
        fault = self.server.faults.get(name)
        if isinstance(fault, int):
            self.send_error(fault)
            return
        path = (self.server.root / name).resolve()
        if self.server.root not in path.parents or not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        modified = email.utils.formatdate(path.stat().st_mtime, usegmt=True)
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        self.end_headers()
        if fault == "truncate":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.faults: dict[str, int | str] = {}
        self.requests: list[str] = []


class FileServer:
    """``with FileServer(folder) as server: server.url`` -> ``http://127.0.0.1:<port>/``."""

    def __init__(self, root: str | Path):
        self._server = _Server(Path(root))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def faults(self) -> dict[str, int | str]:
        return self._server.faults

    @property
    def requests(self) -> list[str]:
        return self._server.requests

    def connection_uri(self) -> str:
        """The value for ``AIRFLOW_CONN_<ID>``: an http connection whose host is the base URL."""
        import json

        return json.dumps({"conn_type": "http", "host": self.url})

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
