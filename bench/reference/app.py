"""The bare queue front-end that issue "Fast intake" compares Mynah with: a
FastAPI endpoint that drops a message on a Celery/Redis queue, and one that
reads a job's state from Celery's Redis result backend. No auth, no
database, no quotas, no dedup, no audit; the job exists only as a queued
message. Run by bench/reference_frontend.py from its own venv
(requirements-reference.txt); never imported by the project."""

import os
import uuid

from celery import Celery
from celery.result import AsyncResult
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
celery = Celery("tts", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])


class TtsRequest(BaseModel):
    text: str
    engine: str = "espeak"


@app.post("/v1/tts", status_code=202)
def submit(request: TtsRequest) -> dict[str, str]:
    job_id = str(uuid.uuid4())
    celery.send_task("tts.generate", args=[job_id, request.text, request.engine], task_id=job_id)
    return {"id": job_id, "status": "queued"}


@app.get("/v1/jobs/{job_id}")
def job(job_id: str) -> dict[str, str]:
    return {"id": job_id, "status": AsyncResult(job_id, app=celery).state.lower()}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
