"""A real S3 endpoint on a free loopback port (moto's standalone server, which speaks S3's HTTP API), for the tests.

The service reaches it through the same boto3 code as production, configured
the way an operator configures it: ``AWS_ENDPOINT_URL`` and the credential
variables. Each test gets a bucket of its own.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

__all__ = ["S3Bucket", "s3_bucket", "s3_endpoint"]


class S3Bucket:
    """One bucket on the test endpoint: its ``s3://`` URL for ANIMEGAN_JOB_STORE, the variables that reach it."""

    def __init__(self, endpoint: str) -> None:
        self.name = "jobs-" + secrets.token_hex(6)
        self.url = f"s3://{self.name}/animegan/jobs"
        self.env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=self.name)

    def keys(self) -> list[str]:
        """Every object's key in the bucket."""
        listed = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def job_keys(self, job_id: str) -> list[str]:
        """The names of a job's objects."""
        return [key.rsplit("/", 1)[1] for key in self.keys() if f"/{job_id}/" in key]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``moto.server`` in a process of its own for the whole session; its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket, with this process's AWS variables pointing at the endpoint (for in-process apps)."""
    bucket = S3Bucket(s3_endpoint)
    for name, value in bucket.env.items():
        monkeypatch.setenv(name, value)
    return bucket


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-2000:]) from None
            time.sleep(0.05)  # a process starting: there is no event to wait on


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
