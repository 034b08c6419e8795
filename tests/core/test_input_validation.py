"""Input the API must refuse rather than ignore or choke on: C1 control
characters in text."""

from __future__ import annotations

import pytest

from jobs.models import Job


def _field_error(response, field: str) -> list[dict]:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"], error
    return error["details"]["fields"][field]


# ------------------------------------------------------ control characters

C1 = ["\x80", "\x85", "\x9b", "\x9f"]  # U+0085 is NEL, U+009B the 8-bit CSI


@pytest.mark.parametrize("char", C1)
def test_c1_control_characters_are_refused_in_text(api, char):
    errors = _field_error(api.post("/v1/tts", {"text": f"hi{char}there"}, format="json"), "text")
    assert errors[0]["code"] == "control_characters"
    errors = _field_error(api.post("/v1/tts", {"text": "hi", "metadata": {"note": f"a{char}b"}}, format="json"), "metadata")
    assert errors[0]["code"] == "control_characters"
    _field_error(api.post("/v1/tts", {"text": "hi", "instruct": f"calm{char}"}, format="json"), "instruct")
    _field_error(
        api.post("/v1/webhook-endpoints", {"url": "https://example.com/h", "description": f"x{char}"}, format="json"), "description"
    )
    # Multipart forms read the same fields.
    _field_error(api.post("/v1/voices", {"name": f"Voice{char}"}, format="multipart"), "name")
    _field_error(api.post("/v1/talking-head", {"text": f"hi{char}"}, format="multipart"), "text")
    assert not Job.objects.exists()


def test_ordinary_whitespace_and_text_beyond_c1_are_accepted(api, stub_broker):
    # Tab and newlines as before; U+00A0 (just past C1) and other scripts are text.
    response = api.post("/v1/tts", {"text": "line one\n\tline two\r\nno\u00a0break, \u00e9t\u00e9, \u4f60\u597d"}, format="json")
    assert response.status_code == 202, response.content
