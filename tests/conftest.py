"""Shared test fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def top_level_modules_after_import(*modules: str) -> set[str]:
    """Top-level packages loaded by a fresh interpreter that imports ``modules``."""
    code = (
        f"import sys, {', '.join(modules)}; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


class StatusServer:
    """A tiny HTTP server standing in for the API server: records every request. With ``valid``
    set it accepts only ``Bearer <valid>`` (401 otherwise, like an API server after a projected
    token expired); ``seen`` lists (Authorization, status code) of every request."""

    def __init__(self, valid: str | None = None) -> None:
        import http.server
        import json
        import threading

        self.requests: list[dict] = []
        self.fail_next = 0
        self.valid = valid
        self.seen: list[tuple[str | None, int]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PATCH(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization")
                if server.valid is not None and auth != f"Bearer {server.valid}":
                    server.seen.append((auth, 401))
                    self.send_response(401)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                server.seen.append((auth, 200))
                if server.fail_next:
                    server.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                server.requests.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(body),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def progress(self) -> list[dict]:
        """The progress documents sent, in order (each a data key of ``<job>-progress``)."""
        return [
            json.loads(document) for r in self.requests for document in r["body"]["data"].values()
        ]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def status_server():
    """An HTTP server recording the progress ConfigMap patches sent by ``olmo.progress``."""
    server = StatusServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, one per session (tests/s3server.py)."""
    from tests.s3server import running_s3_server

    with running_s3_server() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server, monkeypatch) -> str:
    """An empty bucket of this test's own; returns ``s3://NAME``. The environment (and so every
    process the test starts) points botocore at the test server with throwaway credentials."""
    import fsspec

    from tests.s3server import new_bucket

    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    fsspec.filesystem("s3").clear_instance_cache()
    return f"s3://{new_bucket(s3_server)}"
