"""The job URLs every representation carries come from cached templates
(jobs.representation.job_path): they must be what reverse() makes, under
any script prefix (a deployment below a path, SCRIPT_NAME)."""

from __future__ import annotations

import uuid

import pytest
from django.urls import get_script_prefix, reverse, set_script_prefix

from jobs.representation import job_path


@pytest.fixture
def script_prefix():
    previous = get_script_prefix()
    yield set_script_prefix
    set_script_prefix(previous)


@pytest.mark.parametrize("name", ["jobs:detail", "jobs:result", "jobs:audio-stream", "jobs:events", "jobs:cancel"])
def test_job_path_is_what_reverse_makes(name):
    job_id = uuid.uuid4()
    assert (
        job_path(name, job_id)
        == reverse(name, args=[job_id])
        == f"/v1/jobs/{job_id}" + reverse(name, args=[job_id]).split(str(job_id), 1)[1]
    )


def test_job_path_with_a_role():
    job_id = uuid.uuid4()
    assert (
        job_path("jobs:result-file", job_id, "audio")
        == reverse("jobs:result-file", args=[job_id, "audio"])
        == f"/v1/jobs/{job_id}/result/audio"
    )


def test_job_path_follows_the_script_prefix(script_prefix):
    job_id = uuid.uuid4()
    assert job_path("jobs:detail", job_id) == f"/v1/jobs/{job_id}"  # cached for "/" first
    script_prefix("/mynah/")
    assert job_path("jobs:detail", job_id) == reverse("jobs:detail", args=[job_id]) == f"/mynah/v1/jobs/{job_id}"
    assert job_path("jobs:result-file", job_id, "audio") == f"/mynah/v1/jobs/{job_id}/result/audio"
    script_prefix("/")
    assert job_path("jobs:detail", job_id) == f"/v1/jobs/{job_id}"


def test_two_jobs_get_their_own_ids():
    first, second = uuid.uuid4(), uuid.uuid4()
    assert job_path("jobs:audio-stream", first) != job_path("jobs:audio-stream", second)
    assert str(second) in job_path("jobs:audio-stream", second)
