"""Progress reports from the pods to their ``OLMoJob`` (the operator's progress contract).

When the operator starts a trainer or an eval worker it sets ``OLMOJOB_NAME`` and
``OLMOJOB_NAMESPACE`` (and, for the trainer, ``OLMOJOB_ATTEMPT``) and gives the pod a
ServiceAccount that may only ``get``/``patch`` one ConfigMap, ``<job>-progress`` — nothing on
the OLMoJob itself, so a pod cannot rewrite ``status.restarts`` or ``status.phase`` (Kubernetes
RBAC cannot limit a status patch to one field). Each writer owns one data key of that ConfigMap
(``trainer``: rank 0 of the trainer; ``eval``: the eval worker) holding one JSON document: its
whole state so far, so that a merge patch of one key never touches the other's and the newest
document is all the operator needs. The operator validates each document before mirroring it
into the OLMoJob's status (``services/operator/README.md``, "Progress reports"). Outside a
cluster (no ``OLMOJOB_NAME``) nothing is sent.

Reporting must never slow or break training: patches are sent by a background thread, the
newest state wins (intermediate step counts are dropped), each request has a short timeout and
failures are logged, never raised. Standard library only (the pods already have it; no
``kubernetes`` client needed).

Environment: ``OLMOJOB_NAME``, ``OLMOJOB_NAMESPACE``, ``OLMOJOB_ATTEMPT``; the API server is
``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` with the pod's ServiceAccount token and
CA, or ``OLMO_K8S_API_URL`` (e.g. ``http://127.0.0.1:8001`` through ``kubectl proxy`` or a test
server; a token is sent only if the ServiceAccount file exists). The token is a projected one
that the kubelet rotates (about hourly): it is re-read whenever the file changes, and once more
after a 401. ``OLMO_PROGRESS_INTERVAL_SECONDS`` (default 15) spaces step-only updates;
checkpoint and rotation updates go out at once.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from olmo.json_records import now_iso  # also the trainer's, for the times it reports

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CONFIG_MAP_SUFFIX = "-progress"
"""The progress ConfigMap is ``<job>-progress`` (the operator creates it)."""
TRAINER = "trainer"
"""Data key of the trainer's report (rank 0)."""
EVAL = "eval"
"""Data key of the eval worker's report."""
SOURCES = (TRAINER, EVAL)


def config_map_name(job: str) -> str:
    return f"{job}{CONFIG_MAP_SUFFIX}"


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``base`` (nested dicts merged, other values replaced)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class TokenSource:
    """The ServiceAccount token, re-read when the file changes.

    Projected tokens expire: the kubelet writes a new one before the old one does (an atomic
    symlink swap, so the file's identity or mtime changes). Reading the file once at start-up
    would make every report after the first hour a 401. ``refresh()`` re-reads unconditionally
    (after a 401, for a change the stat did not show)."""

    def __init__(self, path: Path | None = None, token: str | None = None):
        self.path = path
        self._token = token
        self._seen: tuple[int, int, int] | None = None

    def get(self) -> str | None:
        if self.path is not None:
            stamp = self._stamp()
            if stamp is not None and stamp != self._seen:
                self._read(stamp)
        return self._token

    def refresh(self) -> bool:
        """Re-read the file; True when the token changed."""
        if self.path is None:
            return False
        before = self._token
        self._read(self._stamp())
        return self._token != before

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the kubelet's ..data symlink
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read(self, stamp: tuple[int, int, int] | None) -> None:
        try:
            self._token = Path(self.path).read_text().strip() or None
            self._seen = stamp
        except OSError as e:
            log.warning("cannot read the ServiceAccount token %s: %s", self.path, e)


class ProgressReporter:
    """Sends this pod's progress document into its data key of ``<job>-progress``."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        api_url: str,
        source: str = TRAINER,
        token: str | None = None,
        token_file: Path | None = None,
        ca_file: str | None = None,
        attempt: int | None = None,
        interval: float = 15.0,
        timeout: float = 5.0,
    ):
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        self.url = (
            f"{api_url.rstrip('/')}/api/v1/namespaces/{namespace}/configmaps/"
            f"{config_map_name(name)}"
        )
        self.source = source
        self.tokens = TokenSource(token_file, token)
        self.attempt = attempt
        self.interval = interval
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._state: dict[str, Any] = {}
        self._dirty = False
        self._urgent = False
        self._last_sent = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="olmo-progress", daemon=True)
        self._thread.start()

    @property
    def token(self) -> str | None:
        return self.tokens.get()

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, *, source: str = TRAINER
    ) -> ProgressReporter | None:
        """A reporter for the pod's OLMoJob, or None when not started by the operator."""
        env = os.environ if environ is None else environ
        name, namespace = env.get("OLMOJOB_NAME"), env.get("OLMOJOB_NAMESPACE")
        if not name or not namespace:
            return None
        token_file, ca_file = SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt"
        api_url = env.get("OLMO_K8S_API_URL")
        ca = None
        if not api_url:
            host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
            if not host:
                log.warning("OLMOJOB_NAME is set but no API server is known: not reporting")
                return None
            host = f"[{host}]" if ":" in host else host
            api_url = f"https://{host}:{port or 443}"
            ca = str(ca_file) if ca_file.is_file() else None
        attempt = env.get("OLMOJOB_ATTEMPT")
        return cls(
            name,
            namespace,
            api_url=api_url,
            source=source,
            token_file=token_file if token_file.is_file() else None,
            ca_file=ca,
            attempt=int(attempt) if attempt and attempt.isdigit() else None,
            interval=float(env.get("OLMO_PROGRESS_INTERVAL_SECONDS", "15")),
        )

    def report(self, fields: dict[str, Any], *, urgent: bool = False) -> None:
        """Merge ``fields`` into this pod's document; it goes out whole (newest wins)."""
        stamped = dict(fields, updated=now_iso())
        if self.attempt is not None:
            stamped.setdefault("attempt", self.attempt)
        with self._cond:
            self._state = deep_merge(self._state, stamped)
            self._dirty = True
            self._urgent = self._urgent or urgent
            self._cond.notify()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is pending (waiting at most ``timeout`` seconds) and stop the thread."""
        with self._cond:
            self._closed = True
            self._urgent = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the sender thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    wait = self.interval - (time.monotonic() - self._last_sent)
                    if self._dirty and (self._urgent or self._closed or wait <= 0):
                        break
                    if self._closed:
                        return
                    self._cond.wait(wait if self._dirty else None)
                document, self._dirty, self._urgent = dict(self._state), False, False
            self._send(document)
            self._last_sent = time.monotonic()

    def _send(self, document: dict[str, Any]) -> None:
        try:
            text = json.dumps(document, allow_nan=False, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as e:  # NaN, a non-JSON value: the API would refuse it
            self.failed += 1
            log.warning("progress report not sent: not JSON-ready: %s", e)
            return
        body = json.dumps({"data": {self.source: text}}).encode()
        try:
            try:
                self._patch(body)
            except urllib.error.HTTPError as e:
                # An expired projected token whose file change the stat did not catch.
                if e.code != 401 or not self.tokens.refresh():
                    raise
                log.info("progress report: 401, retrying once with the re-read token")
                self._patch(body)
            self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.failed += 1
            detail = e.read().decode(errors="replace")[:200] if hasattr(e, "read") else ""
            log.warning("progress report to %s failed: %s %s", self.url, e, detail)

    def _patch(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="PATCH")
        request.add_header("Content-Type", "application/merge-patch+json")
        request.add_header("Accept", "application/json")
        token = self.tokens.get()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=self.timeout, context=self._context):
            pass
