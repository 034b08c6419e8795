"""The playground (/playground) in a real browser against a real stack:
redis-server, gunicorn (ASGI, so event streams are live) and a Dramatiq
worker running the built-in engines on CPU.

A user pastes a key, uploads a voice, makes speech in it (the progress bar
follows the job's SSE stream to 100 %, the <audio> element plays the result
fetched with the key), renders a talking head (<video>), downloads results,
cancels a queued job, sees API errors with code and message, and the page
works on a phone. Screenshots of each step go to the test artifacts
directory (tests/support/browser.py).

Nothing here uses the test database: the stack has its own, and the browser
talks to it only through the public API.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from harness.audio_samples import encode, padded, speech
from harness.portraits import coffee, encoded, grace_hopper
from harness.stack import Stack
from tests.support.browser import PHONE_VIEWPORT, artifacts_dir, chromium_session

pytestmark = pytest.mark.integration

KEY_STORAGE = "mynah.playground.apiKey"  # static/mynah/playground.js
XSS_NAME = '<img src=x onerror="window.__xss=1">Stella'
XSS_LABEL = "<script>window.__xss=2</script><b>bold?</b>"
XSS_TEXT = "<img src=y onerror=alert(3)> is spoken as text."
SPEECH_TEXT = (
    "Hello from the Mynah playground. This speech is made in the voice that was just uploaded. "
    "A third sentence gives the progress bar something to show."
)
# Generous: the machine is small and shared; nothing below asserts a speed.
JOB_TIMEOUT_MS = 180_000
STEP_TIMEOUT_MS = 30_000
TIMINGS: dict[str, float] = {}


# ------------------------------------------------------------------ stack
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("playground"))
    running.manage("collectstatic", "--noinput")  # gunicorn serves them (whitenoise), as `make run` does
    running.start()
    # The other tenant (globex) gets one job in flight at a time (fair share):
    # while one of its jobs runs, the next one stays queued in the database.
    running.manage("shell", "-c", "from tenants.models import Tenant; Tenant.objects.filter(slug='globex').update(max_in_flight=1)")
    yield running
    running.stop()
    if TIMINGS:
        (artifacts_dir() / "playground-timings.json").write_text(json.dumps(TIMINGS, indent=2))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Real files a user would pick: a spoken clip (piper's voice, 7 s), a
    portrait (Grace Hopper) and a photo without a face."""
    folder = tmp_path_factory.mktemp("playground-inputs")
    portrait = folder / "grace-hopper.png"
    portrait.write_bytes(encoded(grace_hopper()))
    no_face = folder / "coffee.jpg"
    no_face.write_bytes(encoded(coffee(), "JPEG"))
    return {"voice": encode(padded(speech("piper")), folder / "stella.wav"), "portrait": portrait, "no_face": no_face}


# ---------------------------------------------------------------- helpers
def open_playground(page, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/playground")
    page.wait_for_selector('#playground[data-ready="1"]')


def use_key(page, key: str) -> None:
    page.fill("#pg-key", key)
    page.click("#pg-key-use")
    page.wait_for_selector('#playground[data-connected="1"]', timeout=STEP_TIMEOUT_MS)


def newest_card(page, *, after: set[str] = frozenset()) -> str:
    """The id of the result card that appeared last (not one of ``after``)."""
    handle = page.wait_for_function(
        """(known) => { const card = document.querySelector('#pg-results-list .pg-result');
                        return card && !known.includes(card.dataset.jobId) && card.dataset.jobId; }""",
        arg=sorted(after),
        timeout=STEP_TIMEOUT_MS,
    )
    return handle.json_value()


def card_ids(page) -> set[str]:
    return set(page.eval_on_selector_all("#pg-results-list .pg-result", "cards => cards.map(c => c.dataset.jobId)"))


def card(job_id: str) -> str:
    return f'#pg-results-list .pg-result[data-job-id="{job_id}"]'


def row(job_id: str) -> str:
    return f'#pg-job-list .pg-job[data-job-id="{job_id}"]'


WATCH_PROGRESS_JS = """(jobId) => {
  window.__progress = window.__progress || {};
  const seen = window.__progress[jobId] = [];
  const record = () => {
    const card = document.querySelector(`.pg-result[data-job-id="${jobId}"]`);
    if (card && seen[seen.length - 1] !== Number(card.dataset.progress)) seen.push(Number(card.dataset.progress));
  };
  record();
  new MutationObserver(record).observe(document.getElementById('pg-results-list'),
    {subtree: true, childList: true, attributes: true, attributeFilter: ['data-progress']});
}"""


def wait_done(page, job_id: str, status: str = "succeeded") -> None:
    page.wait_for_selector(f'{card(job_id)}[data-status="{status}"]', timeout=JOB_TIMEOUT_MS)


def media_duration(page, job_id: str, tag: str) -> float:
    """The player's own duration, once it has loaded the file's metadata."""
    handle = page.wait_for_function(
        """([selector, tag]) => { const media = document.querySelector(`${selector} .pg-player ${tag}`);
             return media && media.readyState >= 1 && Number.isFinite(media.duration) && media.duration > 0 && media.duration; }""",
        arg=[card(job_id), tag],
        timeout=STEP_TIMEOUT_MS,
    )
    return handle.json_value()


def assert_no_horizontal_scroll(page) -> None:
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"horizontal scrolling: content {width} px wide in a {inner} px window"


def expected_http_errors(errors: list[str], *statuses: int) -> list[str]:
    """Chromium logs every failed response to the console ("Failed to load
    resource: ... status of 401"); a test that provokes one on purpose
    expects exactly those and no other error."""
    pattern = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")
    return [error for error in errors if not ((match := pattern.search(error)) and int(match.group(1)) in statuses)]


# ------------------------------------------------------------------ tests
def test_paste_a_key_upload_a_voice_make_speech_and_a_talking_head(stack, inputs):
    with chromium_session(name="playground", permissions=["clipboard-read", "clipboard-write"], reduced_motion="reduce") as browser:
        page = browser.page
        open_playground(page, stack)
        assert page.title() == "Playground · Mynah"
        assert page.get_attribute("#playground", "data-connected") == "0"
        assert page.is_disabled("#pg-tts-submit")  # nothing to do without a key
        browser.screenshot("playground-00-start")

        # Paste the key (a real clipboard paste, no button): it is checked at once.
        page.evaluate("key => navigator.clipboard.writeText(key)", stack.api_key)
        page.focus("#pg-key")
        page.keyboard.press("Control+V")
        page.wait_for_selector('#playground[data-connected="1"]', timeout=STEP_TIMEOUT_MS)
        assert page.text_content("#pg-key-status").startswith("Key accepted: 0 active jobs")
        assert page.get_attribute("#pg-key", "type") == "password"
        assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") == stack.api_key
        browser.screenshot("playground-01-key")

        # Upload a voice; its name is shown as text.
        page.click("#pg-tab-voices")
        page.fill("#pg-voice-name", XSS_NAME)
        page.fill("#pg-voice-transcript", "Please call Stella.")
        page.set_input_files("#pg-voice-file", str(inputs["voice"]))
        page.click("#pg-voice-submit")
        voice = page.wait_for_selector('#pg-voice-list .pg-voice[data-status="ready"]', timeout=JOB_TIMEOUT_MS)
        assert voice.query_selector(".pg-voice-name").text_content() == XSS_NAME
        assert "ready" in voice.text_content() and "of speech" in voice.text_content()
        assert page.text_content("#pg-voice-status") == f"Voice “{XSS_NAME}” is ready."
        browser.screenshot("playground-02-voice")

        # Speech in that voice: the bar follows the SSE stream to 100 %.
        page.click("#pg-tab-speech")
        voice_id = voice.get_attribute("data-voice-id")
        page.select_option("#pg-tts-voice", voice_id)
        page.fill("#pg-tts-text", SPEECH_TEXT)
        page.fill("#pg-tts-label", XSS_LABEL)
        started = time.monotonic()
        page.click("#pg-tts-submit")
        speech_id = newest_card(page)
        page.evaluate(WATCH_PROGRESS_JS, speech_id)
        wait_done(page, speech_id)
        page.wait_for_selector(f'{card(speech_id)}[data-progress="100"]')
        TIMINGS["speech_submit_to_100_s"] = round(time.monotonic() - started, 2)
        assert page.text_content(f"{card(speech_id)} .pg-percent") == "100 %"
        assert page.get_attribute(f"{card(speech_id)} progress", "value") == "100"
        assert page.text_content(f"{card(speech_id)} .pg-stage").startswith("done in ")
        seen = page.evaluate("id => window.__progress[id]", speech_id)
        assert seen[-1] == 100 and seen == sorted(seen), seen
        assert any(0 < value < 100 for value in seen), f"no live progress between 0 and 100: {seen}"
        duration = media_duration(page, speech_id, "audio")
        TIMINGS["speech_audio_duration_s"] = round(duration, 2)
        job = stack.job(speech_id)
        assert job["status"] == "succeeded" and job["input"]["voice_id"] == voice_id
        assert job["metadata"] == {"label": XSS_LABEL}
        assert abs(duration - job["result"]["duration_s"]) < 0.2
        assert page.text_content(f"{card(speech_id)} .pg-result-label").startswith(XSS_LABEL)
        assert "Speaker similarity" in page.text_content(f"{card(speech_id)} .pg-facts")
        browser.screenshot("playground-03-speech")

        # Play it: the browser decodes the blob the page fetched with the key.
        page.evaluate(f"document.querySelector('{card(speech_id)} audio').play()")
        # (a function, not an expression: the page's CSP forbids eval)
        page.wait_for_function(
            "selector => document.querySelector(selector).currentTime > 0.2", arg=f"{card(speech_id)} audio", timeout=STEP_TIMEOUT_MS
        )
        page.evaluate(f"document.querySelector('{card(speech_id)} audio').pause()")

        # Download from the card: a WAV file with a sensible name.
        with page.expect_download() as download_info:
            page.click(f"{card(speech_id)} a.pg-download")
        download = download_info.value
        assert re.fullmatch(r"mynah-speech-[0-9a-f]{8}\.wav", download.suggested_filename)
        data = Path(download.path()).read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) == job["result"]["size_bytes"]

        # A talking head from the portrait and typed text, small and short.
        page.click("#pg-tab-video")
        page.set_input_files("#pg-th-image", str(inputs["portrait"]))
        page.wait_for_selector("#pg-th-preview:not([hidden])")
        page.fill("#pg-th-text", "Hello! I am a talking head.")
        page.select_option("#pg-th-resolution", "512")
        page.fill("#pg-th-fps", "12")
        known = card_ids(page)
        started = time.monotonic()
        page.click("#pg-th-submit")
        video_id = newest_card(page, after=known)
        page.evaluate(WATCH_PROGRESS_JS, video_id)
        wait_done(page, video_id)
        TIMINGS["video_submit_to_100_s"] = round(time.monotonic() - started, 2)
        assert page.text_content(f"{card(video_id)} .pg-percent") == "100 %"
        seen = page.evaluate("id => window.__progress[id]", video_id)
        assert seen[-1] == 100 and seen == sorted(seen), seen
        duration = media_duration(page, video_id, "video")
        TIMINGS["video_duration_s"] = round(duration, 2)
        job = stack.job(video_id)
        assert job["kind"] == "talking_head" and job["result"]["content_type"] == "video/mp4"
        assert job["input"]["fps"] == 12 and job["result"]["width"] == 512
        assert abs(duration - job["result"]["duration_s"]) < 0.2
        assert page.evaluate(f"document.querySelector('{card(video_id)} video').videoWidth") == 512
        assert "512 \N{MULTIPLICATION SIGN} 512, 12 fps" in page.text_content(f"{card(video_id)} .pg-facts")
        browser.screenshot("playground-04-video")

        # The job list shows both, live; download the video from it.
        page.wait_for_selector(f'{row(video_id)}[data-status="succeeded"]', timeout=STEP_TIMEOUT_MS)
        page.wait_for_selector(f'{row(speech_id)}[data-status="succeeded"]')
        assert page.text_content(f"{row(speech_id)} .pg-job-summary") == XSS_LABEL
        with page.expect_download() as download_info:
            page.click(f"{row(video_id)} button.pg-download")
        download = download_info.value
        assert re.fullmatch(r"mynah-video-[0-9a-f]{8}\.mp4", download.suggested_filename)
        data = Path(download.path()).read_bytes()
        assert data[4:8] == b"ftyp" and len(data) == job["result"]["size_bytes"]
        browser.screenshot("playground-05-jobs")

        # Nothing from the API ran as HTML.
        assert page.evaluate("window.__xss") is None
        assert page.locator("#playground img[src=x], #playground script, #playground b").count() == 0

        # The key: this tab's session storage only. It survives a reload...
        assert page.evaluate("localStorage.length") == 0
        assert page.evaluate("document.cookie") == ""
        assert page.context.cookies() == []
        assert stack.api_key not in page.url
        page.reload()
        page.wait_for_selector('#playground[data-connected="1"]', timeout=STEP_TIMEOUT_MS)
        page.wait_for_selector(row(video_id), timeout=STEP_TIMEOUT_MS)
        # ...but "Forget key" drops it, and the forms lock again.
        page.click("#pg-key-forget")
        assert page.get_attribute("#playground", "data-connected") == "0"
        assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None
        assert page.input_value("#pg-key") == ""
        assert page.locator("#pg-job-list .pg-job").count() == 0
        assert page.is_disabled("#pg-tts-submit")
        page.reload()
        page.wait_for_selector('#playground[data-ready="1"]')
        assert page.get_attribute("#playground", "data-connected") == "0"

        # Another browser context (another tab's session) never sees a key.
        use_key(page, stack.api_key)
        other = browser.new_page()
        open_playground(other, stack)
        assert other.get_attribute("#playground", "data-connected") == "0"
        assert other.input_value("#pg-key") == ""
        assert other.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None

        assert browser.errors == []
        assert browser.dialogs == []
    print("playground timings:", TIMINGS)


def test_cancel_a_queued_job(stack):
    """globex may have one job in flight: while a long one runs, the next
    one it submits waits in the queue, deterministically, until canceled."""
    key = stack.other_api_key
    # 20 chunks of 5 s (4,400 characters): it runs until the test cancels it.
    sentence = "This sentence is long enough to be its own chunk for the stuck engine, " * 3
    blocker = requests.post(
        f"{stack.base_url}/v1/tts",
        json={"text": ". ".join([sentence.strip()] * 20) + ".", "engine": "stuck"},
        headers=stack.headers(key),
        timeout=10,
    )
    assert blocker.status_code == 202, blocker.text
    blocker_id = blocker.json()["id"]
    stack.wait_until(
        lambda: (
            requests.get(f"{stack.base_url}/v1/jobs/{blocker_id}", headers=stack.headers(key), timeout=10).json()["status"] == "running"
        ),
        timeout=60,
        what="the blocking job to run",
    )

    with chromium_session(name="playground-cancel", reduced_motion="reduce") as browser:
        page = browser.page
        open_playground(page, stack)
        use_key(page, key)
        page.wait_for_selector(f'{row(blocker_id)}[data-status="running"]', timeout=STEP_TIMEOUT_MS)
        page.fill("#pg-tts-text", "I wait for my turn.")
        page.select_option("#pg-tts-language", "de")
        page.click("#pg-tts-submit")
        queued_id = newest_card(page)
        page.wait_for_selector(f'{card(queued_id)}[data-status="queued"]')
        assert page.text_content(f"{card(queued_id)} .pg-stage") == "waiting to start"
        page.wait_for_selector(f'{row(queued_id)}[data-status="queued"] button.pg-cancel', timeout=STEP_TIMEOUT_MS)
        time.sleep(1)  # a moment in the queue: it is held back, not merely slow to start
        body = requests.get(f"{stack.base_url}/v1/jobs/{queued_id}", headers=stack.headers(key), timeout=10).json()
        assert body["status"] == "queued" and body["started_at"] is None
        browser.screenshot("playground-06-queued")

        # Cancel it from the job list; the card follows (its stream ends with "done").
        page.click(f"{row(queued_id)} button.pg-cancel")
        page.wait_for_selector(f'{row(queued_id)}[data-status="canceled"]', timeout=STEP_TIMEOUT_MS)
        page.wait_for_selector(f'{card(queued_id)}[data-status="canceled"]', timeout=STEP_TIMEOUT_MS)
        assert page.locator(f"{row(queued_id)} button.pg-cancel").count() == 0
        assert page.text_content(f"{card(queued_id)} .pg-stage") == "canceled"
        body = requests.get(f"{stack.base_url}/v1/jobs/{queued_id}", headers=stack.headers(key), timeout=10).json()
        assert body["status"] == "canceled" and body["started_at"] is None  # it never ran
        browser.screenshot("playground-07-canceled")

        # Five more waiting jobs: four cards stream their events, the fifth is
        # kept current by polling (a browser has six connections to a server),
        # and the page still answers: all five are canceled from the list.
        waiting = []
        for number in range(5):
            page.fill("#pg-tts-text", f"Waiting job number {number + 1}.")
            known = card_ids(page)
            page.click("#pg-tts-submit")
            waiting.append(newest_card(page, after=known))
        for job_id in waiting:
            page.wait_for_selector(f'{card(job_id)}[data-status="queued"]')
        polled = page.eval_on_selector_all("#pg-results-list .pg-result[data-connection]", "cards => cards.map(c => c.dataset.jobId)")
        assert polled == [waiting[-1]]
        assert page.text_content(f"{card(waiting[-1])} .pg-stage") == "waiting to start · updated every 4 s"
        for job_id in waiting:
            page.click(f"{row(job_id)} button.pg-cancel", timeout=STEP_TIMEOUT_MS)
            page.wait_for_selector(f'{row(job_id)}[data-status="canceled"]', timeout=STEP_TIMEOUT_MS)
        for job_id in waiting:
            page.wait_for_selector(f'{card(job_id)}[data-status="canceled"]', timeout=STEP_TIMEOUT_MS)

        # The running one can be canceled too: it stops at its next progress point.
        page.click(f"{row(blocker_id)} button.pg-cancel")
        page.wait_for_selector(f'{row(blocker_id)}[data-status="canceled"]', timeout=STEP_TIMEOUT_MS)
        assert browser.errors == []
        assert browser.dialogs == []
    stack.wait_until(
        lambda: (
            requests.get(f"{stack.base_url}/v1/jobs/{blocker_id}", headers=stack.headers(key), timeout=10).json()["status"] == "canceled"
        ),
        timeout=30,
        what="the blocker to stop",
    )


def test_live_progress_resumes_after_a_dropped_stream(stack):
    """The first event stream is cut after one frame (a proxy timing out, a
    server restarting): the page reconnects with Last-Event-ID and the real
    stream resumes after that frame, through to the result."""
    events = re.compile(r"/v1/jobs/[0-9a-f-]+/events$")
    sent: list[dict[str, str]] = []

    def cut_the_first_stream(route):
        sent.append(route.request.headers)
        if len(sent) > 1:
            route.continue_()
            return
        job_id = route.request.url.rsplit("/", 2)[-2]
        frame = {"id": job_id, "status": "queued", "progress": 0, "stage": "queued"}
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
            body=f"retry: 200\n\nid: 0-0\nevent: status\ndata: {json.dumps(frame)}\n\n",
        )

    with chromium_session(name="playground-resume", reduced_motion="reduce") as browser:
        page = browser.page
        open_playground(page, stack)
        use_key(page, stack.api_key)
        page.route(events, cut_the_first_stream)
        page.fill("#pg-tts-text", "The stream was cut, and resumed.")
        page.uncheck("#pg-tts-cache")
        page.click("#pg-tts-submit")
        job_id = newest_card(page)
        wait_done(page, job_id)
        assert media_duration(page, job_id, "audio") > 0
        assert len(sent) == 2, sent
        assert "last-event-id" not in sent[0] and sent[0]["authorization"] == f"Bearer {stack.api_key}"
        assert sent[1]["last-event-id"] == "0-0" and sent[1]["authorization"] == f"Bearer {stack.api_key}"
        assert page.text_content(f"{card(job_id)} .pg-stage").startswith("done in ")
        assert browser.errors == []


def test_speak_now_plays_the_speech_while_it_is_streamed(stack):
    """ "Speak now" submits the form's speech as a streamed MP3 job and plays
    GET /v1/jobs/{id}/audio-stream through MediaSource as the chunks arrive:
    the <audio> element has data and plays; the bytes are the stored result."""
    text = "Speak now plays this at once. A second sentence follows. And a third one ends it."
    with chromium_session(name="playground-speak-now", reduced_motion="reduce") as browser:
        page = browser.page
        open_playground(page, stack)
        use_key(page, stack.api_key)
        page.fill("#pg-tts-text", text)
        page.uncheck("#pg-tts-cache")
        page.click("#pg-tts-speak")
        job_id = newest_card(page)
        page.wait_for_selector(f'{card(job_id)}[data-stream="done"]', timeout=JOB_TIMEOUT_MS)
        assert page.get_attribute(card(job_id), "data-stream-mode") == "mediasource"
        streamed_bytes = int(page.get_attribute(card(job_id), "data-stream-bytes"))
        audio = f"{card(job_id)} audio.pg-stream-audio"
        page.wait_for_function(
            "selector => { const media = document.querySelector(selector);"
            " return media.buffered.length > 0 && media.buffered.end(0) > 3 && media.currentTime > 0.2; }",
            arg=audio,
            timeout=STEP_TIMEOUT_MS,
        )
        browser.screenshot("playground-speak-now")
        page.evaluate(f"document.querySelector('{audio}').pause()")
        wait_done(page, job_id)
        assert page.is_visible(f"{card(job_id)} .pg-download")
        assert browser.errors == []
    job = stack.job(job_id)
    assert job["input"]["format"] == "mp3" and job["result"]["size_bytes"] == streamed_bytes


def test_api_errors_show_code_and_message_as_text(stack, inputs):
    with chromium_session(name="playground-errors", reduced_motion="reduce") as browser:
        page = browser.page
        open_playground(page, stack)

        # A wrong key: 401 with its code, message and request id; nothing kept.
        page.fill("#pg-key", "wrongpre.fix-and-secret")
        page.click("#pg-key-use")
        page.wait_for_selector("#pg-key-error:not([hidden])", timeout=STEP_TIMEOUT_MS)
        assert page.text_content("#pg-key-error .pg-error-code") == "invalid_api_key"
        assert page.text_content("#pg-key-error .pg-error-message") == "Invalid, revoked or expired API key."
        assert re.fullmatch(r"HTTP 401 · request id [0-9a-f]{32}", page.text_content("#pg-key-error .pg-error-meta"))
        assert page.get_attribute("#playground", "data-connected") == "0"
        assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None
        assert page.is_disabled("#pg-tts-submit")
        browser.screenshot("playground-08-bad-key")

        use_key(page, stack.api_key)
        assert page.is_hidden("#pg-key-error")

        # A request the API refuses: the field errors are listed.
        page.fill("#pg-tts-text", "")
        page.click("#pg-tts-submit")
        page.wait_for_selector("#pg-tts-error:not([hidden])", timeout=STEP_TIMEOUT_MS)
        assert page.text_content("#pg-tts-error .pg-error-code") == "validation_error"
        assert page.text_content("#pg-tts-error .pg-error-fields") == "text: This field may not be blank."
        assert "HTTP 400" in page.text_content("#pg-tts-error .pg-error-meta")

        # A job that fails: its error code and message on the card.
        page.click("#pg-tab-video")
        page.set_input_files("#pg-th-image", str(inputs["no_face"]))
        page.fill("#pg-th-text", "Nobody here.")
        page.click("#pg-th-submit")
        failed_id = newest_card(page)
        wait_done(page, failed_id, "failed")
        page.wait_for_selector(f"{card(failed_id)} .pg-error:not([hidden])")
        assert page.text_content(f"{card(failed_id)} .pg-error-code") == "face_not_detected"
        assert page.text_content(f"{card(failed_id)} .pg-error-message")
        page.wait_for_selector(f'{row(failed_id)}[data-status="failed"] .pg-job-error', timeout=STEP_TIMEOUT_MS)
        browser.screenshot("playground-09-job-failed")

        # The network fails: the job list says so, and recovers.
        jobs_url = re.compile(r"/v1/jobs\?")
        page.route(jobs_url, lambda route: route.abort())
        page.click("#pg-jobs-refresh")
        page.wait_for_selector('#pg-jobs-error[data-code="network_error"]', timeout=STEP_TIMEOUT_MS)
        assert page.text_content("#pg-jobs-error .pg-error-message").startswith("Could not reach the server")
        browser.screenshot("playground-10-network")
        page.unroute(jobs_url)
        page.click("#pg-jobs-refresh")
        page.wait_for_selector("#pg-jobs-error", state="hidden", timeout=STEP_TIMEOUT_MS)

        # Text from the API is never HTML: a job's text, and an error message.
        submitted = requests.post(
            f"{stack.base_url}/v1/tts",
            json={"text": XSS_TEXT, "language": "de", "metadata": {"note": "x"}},
            headers=stack.headers(),
            timeout=10,
        )
        assert submitted.status_code == 202
        page.wait_for_selector(row(submitted.json()["id"]), timeout=STEP_TIMEOUT_MS)
        assert page.text_content(f"{row(submitted.json()['id'])} .pg-job-summary") == f"“{XSS_TEXT}”"
        evil = {"error": {"code": "<i>odd</i>", "message": '<img src=z onerror="window.__xss=4">', "details": {}, "request_id": "r1"}}
        page.route(re.compile(r"/v1/usage$"), lambda route: route.fulfill(status=403, json=evil))
        page.click("#pg-key-use")
        page.wait_for_selector("#pg-key-error:not([hidden])", timeout=STEP_TIMEOUT_MS)
        assert page.text_content("#pg-key-error .pg-error-code") == "<i>odd</i>"
        assert page.text_content("#pg-key-error .pg-error-message") == evil["error"]["message"]
        assert page.locator("#playground img[src=z], #playground img[src=y], #playground i").count() == 0
        assert page.evaluate("window.__xss") is None
        browser.screenshot("playground-11-xss")

        assert browser.dialogs == []
        unexpected = expected_http_errors(browser.errors, 400, 401, 403)
        assert [error for error in unexpected if "net::ERR_FAILED" not in error] == []


def test_usable_on_a_phone(stack, inputs):
    phone = {"viewport": PHONE_VIEWPORT, "device_scale_factor": 2, "is_mobile": True, "has_touch": True, "reduced_motion": "reduce"}
    with chromium_session(name="playground-phone", **phone) as browser:
        page = browser.page
        open_playground(page, stack)
        assert_no_horizontal_scroll(page)
        use_key(page, stack.api_key)
        assert_no_horizontal_scroll(page)
        for control in ("#pg-key", "#pg-key-use", "#pg-tts-text", "#pg-tts-submit"):
            box = page.locator(control).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE_VIEWPORT["width"], (control, box)

        page.fill("#pg-tts-text", "Made on a phone.")
        page.tap("#pg-tts-submit")
        job_id = newest_card(page)
        wait_done(page, job_id)
        assert media_duration(page, job_id, "audio") > 0
        assert page.locator(card(job_id)).is_visible()
        assert_no_horizontal_scroll(page)
        page.wait_for_selector(row(job_id), timeout=STEP_TIMEOUT_MS)
        assert_no_horizontal_scroll(page)
        browser.screenshot("playground-12-phone-speech")

        for tab in ("#pg-tab-video", "#pg-tab-voices"):
            page.tap(tab)
            assert_no_horizontal_scroll(page)
        browser.screenshot("playground-13-phone-voices")
        assert browser.errors == []
        assert browser.dialogs == []
