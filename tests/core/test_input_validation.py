"""Input the API must refuse rather than ignore or choke on: C1 control
characters in text, and the one JSON reader shared by bodies and form fields."""

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


# ------------------------------------------------------------- JSON reader


def test_json_reader_refuses_nesting_past_its_depth_without_recursing():
    from core.parsers import MAX_JSON_DEPTH, JsonTooDeep, json_text_parse

    assert json_text_parse("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    for depth in (MAX_JSON_DEPTH + 1, 900, 5000, 200_000):
        with pytest.raises(JsonTooDeep):
            json_text_parse("[" * depth + "]" * depth)
        with pytest.raises(JsonTooDeep):
            json_text_parse('{"a":' * depth + "1" + "}" * depth)
    with pytest.raises(JsonTooDeep):
        json_text_parse('{"a": [[[1]]]}', max_depth=3)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "NaN is not valid JSON"),
        ('{"a": Infinity}', "Infinity is not valid JSON"),
        ('{"a": -Infinity}', "-Infinity is not valid JSON"),
        ("{", "Expecting property name"),
        ("", "Expecting value"),
        ("\ufeff{}", "BOM"),
        (b"\xff\xfe", "can't decode"),
    ],
)
def test_json_reader_refuses_what_is_not_json(text, reason):
    from core.parsers import json_text_parse

    with pytest.raises(ValueError, match=reason):
        json_text_parse(text)


def test_json_reader_reads_json():
    from core.parsers import json_text_parse

    assert json_text_parse(b'{"a": [1, 2.5, "\\u00e9", null, true]}') == {"a": [1, 2.5, "\u00e9", None, True]}
    assert json_text_parse('{"a": 1e999}') == {"a": float("inf")}  # a JSON number; metadata refuses it (not finite)


# ------------------------------------------------------ serializer fields


def test_each_serializer_gets_its_own_fields_and_nested_ones_stay_deep_copies():
    """StrictSerializer copies its declared fields shallowly (DRF deep-copies
    them, a sixth of a submission's CPU): each instance still binds its own
    field objects, a change to one instance's field reaches no other, and a
    nested serializer is its own deep copy."""
    from rest_framework import serializers

    from core.fields import StrictCharField, StrictSerializer

    class Inner(StrictSerializer):
        name = StrictCharField(max_length=5)

    class Outer(StrictSerializer):
        text = StrictCharField(max_length=10)
        kind = serializers.ChoiceField(choices=["a", "b"], default="a")
        tags = serializers.ListField(child=serializers.ChoiceField(choices=["x", "y"]), required=False)
        inner = Inner(required=False)
        inners = Inner(many=True, required=False)

    first, second = Outer(data={"text": "hello", "tags": ["x"], "inner": {"name": "ok"}}), Outer(data={"text": "a" * 11, "kind": "c"})
    for name in ("text", "kind", "tags", "inner", "inners"):
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first and second.fields[name].parent is second
        assert Outer._declared_fields[name].parent is None  # the declared field is never bound
    assert first.fields["inner"].fields["name"] is not second.fields["inner"].fields["name"]
    assert first.fields["inner"].fields["name"].root is first
    first.fields["text"].help_text = "changed"  # one instance's change...
    assert second.fields["text"].help_text is None and Outer._declared_fields["text"].help_text is None  # ...is its own
    assert first.is_valid(), first.errors
    assert second.is_valid() is False and set(second.errors) == {"text", "kind"}
    assert second.errors["text"][0].code == "max_length"
    third = Outer(data={"text": "hello", "tags": ["x", "y"], "inner": {"name": "ok"}, "inners": [{"name": "a"}]})
    assert third.is_valid(), third.errors
    assert third.validated_data == {"text": "hello", "kind": "a", "tags": ["x", "y"], "inner": {"name": "ok"}, "inners": [{"name": "a"}]}
