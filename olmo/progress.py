"""Progress reports from the pods to their ``OLMoJob`` (the operator's status contract).

When the operator starts a trainer or an eval worker it sets ``OLMOJOB_NAME`` and
``OLMOJOB_NAMESPACE`` (and ``OLMOJOB_ATTEMPT``) and gives the pod a ServiceAccount that may only
``get``/``patch`` that one object's ``status``. Rank 0 of the trainer then merge-patches
``status.progress`` (step, tokens, latest checkpoint, rotations), the eval worker
``status.progress.lastEval``; the operator mirrors these into the top-level status fields and
turns changes into Events (``services/operator/README.md``). Outside a cluster (no
``OLMOJOB_NAME``) nothing is sent.

Reporting must never slow or break training: patches are sent by a background thread, the
newest state wins (intermediate step counts are dropped), each request has a short timeout and
failures are logged, never raised. Standard library only (the pods already have it; no
``kubernetes`` client needed).

Environment: ``OLMOJOB_NAME``, ``OLMOJOB_NAMESPACE``, ``OLMOJOB_ATTEMPT``; the API server is
``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` with the pod's ServiceAccount token and
CA, or ``OLMO_K8S_API_URL`` (e.g. ``http://127.0.0.1:8001`` through ``kubectl proxy`` or a test
server; a token is sent only if the ServiceAccount file exists). ``OLMO_PROGRESS_INTERVAL_SECONDS``
(default 15) spaces step-only updates; checkpoint and rotation updates go out at once.
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

GROUP, VERSION, PLURAL = "olmo-k8s.io", "v1alpha1", "olmojobs"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PROGRESS = "progress"
"""``status.progress``: written by the pods, read by the operator."""


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``base`` (nested dicts merged, other values replaced) —
    what a JSON merge patch does on the server."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class ProgressReporter:
    """Sends ``{"status": {"progress": ...}}`` merge patches to one OLMoJob's status."""

    def __init__(
        self,
        name: str,
        namespace: str,
        *,
        api_url: str,
        token: str | None = None,
        ca_file: str | None = None,
        attempt: int | None = None,
        interval: float = 15.0,
        timeout: float = 5.0,
    ):
        self.url = (
            f"{api_url.rstrip('/')}/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
            f"/{PLURAL}/{name}/status"
        )
        self.token = token
        self.attempt = attempt
        self.interval = interval
        self.timeout = timeout
        self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self._pending: dict[str, Any] = {}
        self._urgent = False
        self._last_sent = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self.sent = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="olmo-progress", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ProgressReporter | None:
        """A reporter for the pod's OLMoJob, or None when not started by the operator."""
        env = os.environ if environ is None else environ
        name, namespace = env.get("OLMOJOB_NAME"), env.get("OLMOJOB_NAMESPACE")
        if not name or not namespace:
            return None
        token_file, ca_file = SERVICE_ACCOUNT_DIR / "token", SERVICE_ACCOUNT_DIR / "ca.crt"
        token = token_file.read_text().strip() if token_file.is_file() else None
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
            token=token,
            ca_file=ca,
            attempt=int(attempt) if attempt and attempt.isdigit() else None,
            interval=float(env.get("OLMO_PROGRESS_INTERVAL_SECONDS", "15")),
        )

    def report(self, fields: dict[str, Any], *, urgent: bool = False) -> None:
        """Queue ``fields`` for ``status.progress`` (merged with what is still pending)."""
        stamped = dict(fields, updated=now_iso())
        if self.attempt is not None:
            stamped.setdefault("attempt", self.attempt)
        with self._cond:
            self._pending = deep_merge(self._pending, stamped)
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
                    if self._pending and (self._urgent or self._closed or wait <= 0):
                        break
                    if self._closed:
                        return
                    self._cond.wait(wait if self._pending else None)
                payload, self._pending, self._urgent = self._pending, {}, False
            self._send(payload)
            self._last_sent = time.monotonic()

    def _send(self, progress: dict[str, Any]) -> None:
        body = json.dumps({"status": {PROGRESS: progress}}).encode()
        request = urllib.request.Request(self.url, data=body, method="PATCH")
        request.add_header("Content-Type", "application/merge-patch+json")
        request.add_header("Accept", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context):
                self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as e:
            self.failed += 1
            detail = e.read().decode(errors="replace")[:200] if hasattr(e, "read") else ""
            log.warning("progress report to %s failed: %s %s", self.url, e, detail)
