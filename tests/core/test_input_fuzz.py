"""Property tests for input that arrives both as JSON and as multipart form
fields: whatever the client sends, the answer is never a 5xx, and metadata
gets the same verdict on /v1/tts (a JSON body) as on /v1/talking-head (JSON
text in a form field), because one reader and one field parse both.

Schemathesis (tests/core/test_openapi.py) fuzzes every operation from the
schema; these add the hostile shapes random generation does not reach:
nesting hundreds of levels deep, NaN and Infinity, escaped control
characters and lone surrogates."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.models import Job

FUZZ = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
_values = st.recursive(
    _scalars, lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=12
)


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"a": ' + "[" * depth + "]" * depth + "}"  # inside an object, as metadata is


# Texts that are each one JSON value (or clearly not JSON at all): the same
# text is put into a JSON body and into a form field.
_metadata_texts = st.one_of(
    _values.map(json.dumps),
    _values.map(lambda value: json.dumps(value, ensure_ascii=False)),
    st.builds(
        _nested,
        st.sampled_from([1, 2, 15, 16, 17, 31, 32, 33, 100, 500, 990, 1000, 1010, 3000, 8000]),
        st.sampled_from(["list", "object", "metadata"]),
    ),
    st.sampled_from(
        [
            "NaN",
            '{"a": NaN}',
            '{"a": Infinity}',
            '{"a": -Infinity}',
            '{"a": 1e999}',
            '{"a": "\\ud800"}',
            '{"\\udfff": 1}',
            '{"a": "\\u0000"}',
            '{"a": "\\u0085"}',
            '{"a": "\\u009b"}',
            '{"a": "\u0085"}',
            '{"a": "x\\u007f"}',
            '{"a": "tab\\tok"}',
            "null",
            "[]",
            "{}",
            '"text"',
            "1",
            '{"a": 1, "a": 2}',
            '{"k": "' + "x" * 5000 + '"}',
            json.dumps({str(index): index for index in range(40)}),
        ]
    ),
)


def _tts_refuses(api, text: str) -> bool:
    # No "text": the answer is always a 400, and it names metadata when
    # metadata is wrong too (field errors are collected together).
    response = api.post("/v1/tts", '{"metadata": ' + text + "}", content_type="application/json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    error = response.json()["error"]
    return error["code"] == "malformed_request" or "metadata" in error["details"]["fields"]


def _talking_head_refuses(api, text: str) -> bool:
    # No image: always a 400, naming metadata when it is wrong.
    response = api.post("/v1/talking-head", {"metadata": text}, format="multipart")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    return "metadata" in response.json()["error"]["details"]["fields"]


@pytest.mark.django_db
@FUZZ
@given(text=_metadata_texts)
def test_metadata_gets_one_verdict_whatever_the_content_type(api, text):
    assert _tts_refuses(api, text) == _talking_head_refuses(api, text)
    assert not Job.objects.exists()


@pytest.mark.django_db
@FUZZ
@given(text=st.text(max_size=300))
def test_any_metadata_text_in_a_form_is_a_clean_400(api, text):
    _talking_head_refuses(api, text)


_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@pytest.mark.django_db
@FUZZ
@given(
    name=st.text(max_size=120),
    language=st.text(max_size=40),
    transcript=st.text(max_size=60),
)
def test_voice_form_fields_are_checked_like_json_fields(api, name, language, transcript):
    # No audio: always a 400. A name with control characters is refused for them.
    response = api.post("/v1/voices", {"name": name, "language": language, "transcript": transcript}, format="multipart")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    fields = response.json()["error"]["details"]["fields"]
    assert "audio" in fields
    if _FORBIDDEN.search(name):
        assert [error["code"] for error in fields["name"]] == ["control_characters"]
