"""Object storage against a real S3 server (SeaweedFS, signatures checked):
results land under server-generated keys, presigned URLs work over HTTP,
large outputs upload in parts, and an outage mid-job ends in success."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from engines.audio.io import decode_audio
from harness.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedS3
from jobs import services
from jobs.models import Job
from jobs.services import JobRetry, TtsParams
from jobs.services import run as run_module

# A SeaweedFS server; job runs append to their event streams in Redis.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("redis_url")]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs")).start()
    yield server
    server.stop()


@pytest.fixture
def s3_storage(settings, seaweed):
    """Point Django's default storage at the S3 server, as STORAGE=s3 does."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "region_name": "us-east-1",
                "endpoint_url": seaweed.endpoint_url,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "default_acl": None,
                "file_overwrite": True,
                "querystring_auth": True,
                "querystring_expire": settings.STORAGE_URL_EXPIRES_S,
                "client_config": Config(
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                    connect_timeout=1,
                    read_timeout=5,
                    retries={"max_attempts": 1, "mode": "standard"},
                ),
                "transfer_config": TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
            },
        },
    }
    return seaweed


def _submit(tenant, engine="tone", text="Hello object storage.") -> Job:
    params = TtsParams(text=text, language="en", engine=engine, format="wav", speed=1.0)
    return services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="test", ip=None, use_cache=False)


def test_result_is_stored_in_s3_and_served_by_presigned_url(api, tenant, s3_storage, tmp_path):
    job = _submit(tenant)
    services.job_run(job_id=str(job.id))
    job.refresh_from_db()
    assert job.status == "succeeded"
    key = f"tenants/{tenant.id}/jobs/{job.id}/output-1.wav"
    head = s3_storage.client().head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == job.result_size_bytes

    body = api.get(f"/v1/jobs/{job.id}").json()
    url = body["result"]["url"]
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(s3_storage.endpoint_url) and "X-Amz-Signature" in query
    assert int(query["X-Amz-Expires"][0]) == 3600
    assert body["result"]["expires_at"] < job.result_expires_at.isoformat()  # the URL expires before retention

    fetched = requests.get(url, timeout=10)
    assert fetched.status_code == 200 and len(fetched.content) == job.result_size_bytes
    (tmp_path / "out.wav").write_bytes(fetched.content)
    audio, rate = decode_audio(tmp_path / "out.wav")
    assert abs(len(audio) / rate - job.result_duration_s) < 0.05
    tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(tampered, timeout=10).status_code == 403

    redirect = api.get(f"/v1/jobs/{job.id}/result")
    assert redirect.status_code == 302
    assert requests.get(redirect["Location"], timeout=10).content == fetched.content


def test_large_outputs_upload_in_parts(tenant, s3_storage, tmp_path):
    job = _submit(tenant)
    claimed = services.job_claim(job_id=str(job.id))
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + bytes(12 * MIB))
    result = services.JobOutput(path=big, content_type="audio/wav", duration_s=1.0, size_bytes=big.stat().st_size)
    run_module._job_store_result(claimed, result)
    job.refresh_from_db()
    etag = s3_storage.client().head_object(Bucket=BUCKET, Key=job.result_key)["ETag"].strip('"')
    assert job.status == "succeeded"
    assert etag.endswith("-3")  # 12 MiB in 5 MiB parts: a multipart upload


def test_wrong_credentials_are_rejected_and_the_job_retries(tenant, s3_storage, settings):
    settings.STORAGES["default"]["OPTIONS"]["secret_key"] = "not-the-secret"
    settings.STORAGES = dict(settings.STORAGES)  # re-create the storage
    job = _submit(tenant)
    with pytest.raises(JobRetry):
        services.job_run(job_id=str(job.id))
    job.refresh_from_db()
    assert (job.status, job.error_code, job.result_key) == ("queued", "storage_unavailable", "")


@pytest.mark.django_db(transaction=True)
def test_storage_outage_mid_job_ends_in_success(api, tenant, s3_storage):
    job = _submit(tenant, engine="slow", text="One. Two. Three. Four. Five. Six.")
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            services.job_run(job_id=str(job.id))
            outcome.append(None)
        except JobRetry as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    while Job.objects.get(id=job.id).stage != "synthesizing":
        time.sleep(0.02)
    s3_storage.stop()  # the store goes away while the engine runs
    worker.join(timeout=60)
    job.refresh_from_db()
    assert isinstance(outcome[0], JobRetry)
    assert (job.status, job.error_code, job.result_key) == ("queued", "storage_unavailable", "")
    ready = api.get("/readyz")
    assert ready.status_code == 503 and "storage" in ready.json()["error"]["details"]["failing"]

    s3_storage.start()  # back, with its data
    services.job_run(job_id=str(job.id))  # the redelivered message
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert job.result_key.endswith("output-2.wav")
    head = s3_storage.client().head_object(Bucket=BUCKET, Key=job.result_key)
    assert head["ContentLength"] == job.result_size_bytes
