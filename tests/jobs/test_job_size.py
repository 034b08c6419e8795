"""How much one job may make, and fair share by size: the estimate at submit
(checked against the real engines), the refusal of a job too large, the
worker's stop once the output passes the limit, and a tenant's share of the
workers counted in estimated work rather than in jobs."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from engines import registry
from engines.tts.base import SpeechRequest
from harness.doubles import ToneEngine
from harness.portraits import astronaut, encoded
from jobs import services
from jobs.models import Job
from jobs.services import TtsParams
from jobs.services.params import speech_duration_estimate
from tenants.models import Tenant
from tests.support.broker import queued_job_ids

TTS = "/v1/tts"
CJK = "今天天气很好，我们去公园散步吧。这是一个测试句子，用来检查语音合成的速度。"
pytestmark = pytest.mark.django_db(transaction=True)  # submissions dispatch on commit


def _tts(api, text: str, **fields):
    response = api.post(TTS, {"text": text, "engine": "tone", "cache": False, **fields}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def _words(count: int, tag: str) -> str:
    """``count`` different words of letters only (digits are read as number words)."""
    return " ".join(tag + chr(97 + n // 26) + chr(97 + n % 26) for n in range(count))


def _cost(job_id: str) -> float:
    return Job.objects.get(id=job_id).cost


# ---------------------------------------------------------------- estimate


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "The quick brown fox jumps over the lazy dog. It was a sunny day in the park, and everyone was happy."),
        ("en", CJK),  # read as English: every character by its name
        ("en", "Call 1234567 or 89012 34567 before 8901234."),
        ("en", "Greek αβγδεζηθικ and Cyrillic ЖЖЖЖЖЖ letters."),
        ("cmn", CJK),
        ("de", "Der schnelle braune Fuchs springt über den faulen Hund."),
        ("ru", "Быстрая коричневая лиса прыгает через ленивую собаку."),
        ("hi", "तेज भूरी लोमड़ी आलसी कुत्ते के ऊपर कूदती है"),
    ],
)
def test_the_estimate_follows_what_a_real_engine_makes(language, text):
    engine = registry.get_engine("espeak")
    made = len(engine.synthesize_chunk(text, SpeechRequest(text=text, language=language))) / engine.sample_rate
    estimate = speech_duration_estimate(text=text, language=language)
    assert 0.75 * made <= estimate <= 1.6 * made, (made, estimate)
    assert speech_duration_estimate(text=text, language=language, speed=2.0) == pytest.approx(estimate / 2, abs=0.1)


def test_characters_of_another_script_cost_what_engines_make_of_them():
    """The reported case: 5,000 Chinese characters with the default (English)
    engine made 1,890 s of audio. Read as Mandarin they are a sixth of it."""
    text = (CJK * 200)[:5000]
    as_english = speech_duration_estimate(text=text, language="en")
    as_mandarin = speech_duration_estimate(text=text, language="cmn")
    assert as_english > 1890 > 1800 > as_mandarin


# ------------------------------------------------------------ too large


def test_a_request_over_the_duration_limit_is_refused_at_submit(api, tenant, stub_broker):
    text = (CJK * 200)[:5000]
    refused = api.post(TTS, {"text": text}, format="json")  # the default engine speaks English
    assert refused.status_code == 422, refused.content
    error = refused.json()["error"]
    assert error["code"] == "job_too_large"
    assert error["details"]["limit_s"] == 1800 and error["details"]["estimated_duration_s"] > 1800
    assert "language" in error["message"] and "1800 s" in error["message"]
    assert not Job.objects.exists()
    # The same text in its own language is within the limit.
    assert api.post(TTS, {"text": text, "language": "cmn"}, format="json").status_code == 202
    # A tenant's own limit.
    Tenant.objects.filter(pk=tenant.pk).update(max_job_duration_s=10)
    assert api.post(TTS, {"text": _words(20, "w"), "engine": "tone"}, format="json").status_code == 202
    too_long = api.post(TTS, {"text": _words(100, "word"), "engine": "tone"}, format="json")
    assert too_long.status_code == 422 and too_long.json()["error"]["details"]["limit_s"] == 10
    assert api.get("/v1/usage").json()["limits"]["max_job_duration_s"] == 10


def test_a_talking_head_from_text_over_the_limit_is_refused_before_its_uploads_are_stored(api, tenant, stub_broker):
    from django.core.files.storage import default_storage

    Tenant.objects.filter(pk=tenant.pk).update(max_job_duration_s=10)
    image = SimpleUploadedFile("p.png", encoded(astronaut(), "PNG"), content_type="image/png")
    response = api.post("/v1/talking-head", {"image": image, "text": _words(100, "word")}, format="multipart")
    assert response.status_code == 422 and response.json()["error"]["code"] == "job_too_large"
    assert not default_storage.exists(f"tenants/{tenant.pk}")


def test_the_worker_stops_a_job_whose_output_passes_the_limit(tenant, monkeypatch, redis_url):
    """Whatever the estimate said, the engine stops at the first chunk past
    the tenant's limit: the work one job may take is bounded."""
    chunks: list[str] = []
    original = ToneEngine.synthesize_chunk

    def counting(self, text, request):
        chunks.append(text)
        return original(self, text, request)

    monkeypatch.setattr(ToneEngine, "synthesize_chunk", counting)
    text = " ".join(f"{_words(40, 's')}." for _ in range(10))  # 10 chunks of 4 s of tone
    params = TtsParams(text=text, language="en", engine="tone", format="wav", speed=1.0)
    job = services.job_submit_tts(tenant=tenant, api_key=None, params=params, metadata={}, actor="t", ip=None, use_cache=False)
    Tenant.objects.filter(pk=tenant.pk).update(max_job_duration_s=6)  # lower than the estimate let through
    services.job_run(job_id=str(job.id))
    job.refresh_from_db()
    assert (job.status, job.error_code, job.attempts) == ("failed", "duration_limit_exceeded", 1)
    assert "6 s" in job.error_message
    assert len(chunks) == 2  # 4 s, 8 s: stopped there, not after 40 s


def test_a_talking_heads_speech_stops_at_the_longest_video(api, tenant, stub_broker, settings, monkeypatch, redis_url):
    chunks: list[str] = []
    original = ToneEngine.synthesize_chunk

    def counting(self, text, request):
        chunks.append(text)
        return original(self, text, request)

    monkeypatch.setattr(ToneEngine, "synthesize_chunk", counting)
    settings.TALKING_HEAD_MAX_AUDIO_S = 3.0
    image = SimpleUploadedFile("p.png", encoded(astronaut(), "PNG"), content_type="image/png")
    text = " ".join(f"{_words(40, 's')}." for _ in range(5))
    response = api.post("/v1/talking-head", {"image": image, "text": text, "tts_engine": "tone"}, format="multipart")
    assert response.status_code == 202, response.content
    services.job_run(job_id=response.json()["id"])
    job = Job.objects.get(id=response.json()["id"])
    assert (job.status, job.error_code) == ("failed", "audio_too_long")
    assert len(chunks) == 1


# -------------------------------------------------------- fair share by size


def test_fair_share_weighs_jobs_by_their_size(api, other_api, tenant, stub_broker):
    """A's share is 100 s of speech. Two long texts (~60 s each) and three
    short ones: one long text fills it, so B's sentence queues behind one job
    of A, not five. Counted in jobs, all five were in front of it."""
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight_cost=100, max_in_flight=8)
    long_1, long_2 = _tts(api, _words(210, "one")), _tts(api, _words(210, "two"))
    short = [_tts(api, f"Short {n}.") for n in range(3)]
    assert 50 < _cost(long_1) < 80 and 50 < _cost(long_2) < 80 and all(_cost(job) < 5 for job in short)
    assert queued_job_ids(stub_broker, "tts") == [long_1]
    other = _tts(other_api, "Another tenant.")
    assert queued_job_ids(stub_broker, "tts") == [long_1, other]
    # (job_run here leaves its message in the stub broker's queue.)
    services.job_run(job_id=long_1)  # A's share is free again: the next long one and the short ones fit
    assert queued_job_ids(stub_broker, "tts") == [long_1, other, long_2, *short]


def test_a_job_larger_than_the_share_runs_alone_and_keeps_its_place(api, tenant, stub_broker):
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight_cost=10)
    first = _tts(api, "First.")
    big = _tts(api, _words(150, "big"))
    after = _tts(api, "After.")
    assert _cost(big) > 10
    assert queued_job_ids(stub_broker, "tts") == [first]  # the big one waits for room; the one behind it too
    services.job_run(job_id=first)  # (its message stays in the stub broker's queue)
    assert queued_job_ids(stub_broker, "tts") == [first, big]  # alone
    services.job_run(job_id=big)
    assert queued_job_ids(stub_broker, "tts") == [first, big, after]


def test_speech_and_talking_heads_have_separate_shares(api, tenant, stub_broker, settings, tmp_path):
    """Each kind has its own queues and workers: a talking head filling the
    tenant's video share does not hold back its speech jobs."""
    settings.TALKING_HEAD_COST_PER_SECOND = 100.0
    Tenant.objects.filter(pk=tenant.pk).update(max_in_flight_cost=100)

    def talking_head(text: str) -> str:
        image = SimpleUploadedFile("p.png", encoded(astronaut(), "PNG"), content_type="image/png")
        response = api.post("/v1/talking-head", {"image": image, "text": text, "tts_engine": "tone"}, format="multipart")
        assert response.status_code == 202, response.content
        return response.json()["id"]

    video_1, video_2 = talking_head("One video."), talking_head("Another video.")
    speech = _tts(api, "Speech meanwhile.")
    estimate = speech_duration_estimate(text="One video.", language="en")
    assert _cost(video_1) == pytest.approx(estimate * 100, abs=0.1)
    assert queued_job_ids(stub_broker, "video") == [video_1]
    assert queued_job_ids(stub_broker, "tts") == [speech]
    assert Job.objects.get(id=video_2).enqueued_at is None
