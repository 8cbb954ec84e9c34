"""A real S3 API server on 127.0.0.1 for the object-storage tests: moto's standalone server,
started in a process of its own (so the trainer processes of a test, and a SIGKILL of them, see a
server that is not part of pytest's process), one per test session.

Each test gets an empty bucket of its own (``s3_bucket``) and the environment every process it
starts inherits: ``AWS_ENDPOINT_URL`` (the S3-compatible endpoint, read by botocore and
``olmo.storage``) and throwaway credentials.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server through botocore's standard variables."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_s3_server(timeout: float = 60.0) -> Iterator[S3Server]:
    """Start ``moto.server`` on a free loopback port, wait until it answers, stop it after."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto.server exited with {process.returncode} at start")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto.server did not answer on {endpoint}") from None
                time.sleep(0.1)
        yield S3Server(endpoint, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def new_bucket(server: S3Server) -> str:
    """Create an empty bucket with a unique name; returns the name."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:20]}"
    client = boto3.client("s3", endpoint_url=server.endpoint, **_boto_credentials())
    client.create_bucket(Bucket=name)
    return name


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }
