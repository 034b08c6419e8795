"""Strict serializer fields: JSON types must match exactly (DRF would turn
``123`` into ``"123"`` and ``"1.5"`` into ``1.5``)."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from rest_framework import serializers
from rest_framework.utils import html

from core.parsers import JsonTooDeep, deeper_than, json_text_parse

# Printable text only: tab, line feed and carriage return are fine; the other
# control characters (Unicode category Cc: C0, DEL and C1, which includes
# U+0085 NEL and U+009B, the 8-bit CSI of terminal escapes) and lone
# surrogates are not.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


class StrictCharField(serializers.CharField):
    default_error_messages = {"control_characters": "Control characters are not allowed."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if _FORBIDDEN_CONTROL.search(data):
            self.fail("control_characters")
        return super().to_internal_value(unicodedata.normalize("NFC", data))


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


def _has_forbidden_text(value: Any) -> bool:
    """True if any string (key or value) in a JSON tree holds control
    characters or lone surrogates (Postgres jsonb also refuses NUL)."""
    if isinstance(value, str):
        return bool(_FORBIDDEN_CONTROL.search(value))
    if isinstance(value, dict):
        return any(_has_forbidden_text(k) or _has_forbidden_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_forbidden_text(item) for item in value)
    return False


class MetadataField(serializers.DictField):
    """Client metadata echoed back on the job: a small JSON object. The one
    place metadata is read: an object in a JSON body, or JSON text in a form
    field (multipart), parsed by the same reader as JSON bodies."""

    MAX_BYTES = 4096
    MAX_KEYS = 32
    MAX_DEPTH = 16  # levels of objects and arrays, the metadata object itself included
    default_error_messages = {
        "not_a_dict": "Metadata must be a JSON object.",
        "not_json": "Metadata must be a JSON object.",
        "too_deep": f"Metadata may nest objects and arrays at most {MAX_DEPTH} levels deep.",
        "too_large": f"Metadata must encode to at most {MAX_BYTES} bytes of JSON.",
        "too_many_keys": f"Metadata may have at most {MAX_KEYS} keys.",
        "control_characters": "Metadata may not contain control characters.",
        "not_finite": "Metadata numbers must be finite.",
    }

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary):
            # A form field holding JSON text, not DRF's "metadata.key" form convention.
            value = dictionary.get(self.field_name, serializers.empty)
            return _FormJson(value) if isinstance(value, str) else value
        return super().get_value(dictionary)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, _FormJson):
            try:
                data = json_text_parse(data, max_depth=self.MAX_DEPTH)
            except JsonTooDeep:
                self.fail("too_deep")
            except ValueError:
                self.fail("not_json")
        elif isinstance(data, UploadedFile):
            self.fail("not_json")
        if not isinstance(data, dict):
            self.fail("not_a_dict")
        if deeper_than(data, self.MAX_DEPTH):  # a JSON body may nest up to MAX_JSON_DEPTH
            self.fail("too_deep")
        value = super().to_internal_value(data)
        if len(value) > self.MAX_KEYS:
            self.fail("too_many_keys")
        if _has_forbidden_text(value):
            self.fail("control_characters")
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
        except ValueError:  # 1e999 parses to inf, which no JSON column stores
            self.fail("not_finite")
        if len(encoded) > self.MAX_BYTES:
            self.fail("too_large")
        return value


def _is_nested(field: serializers.Field) -> bool:
    return isinstance(field, serializers.BaseSerializer) or isinstance(getattr(field, "child", None), serializers.BaseSerializer)


class _FormJson(str):
    """JSON text from a form field (a plain str in a JSON body is not metadata)."""


class StrictSerializer(serializers.Serializer):
    """Rejects unknown fields, so a typo ("langauge") is an error, not a default."""

    def get_fields(self) -> dict[str, serializers.Field]:
        """Each instance's own fields, as DRF's, but copied shallowly: DRF
        deep-copies every declared field per instance (running each field's
        __init__ again), which was a sixth of a submission's CPU (profiled).
        A plain field keeps no state of its own per request, and binding
        sets a copy's name and parent without touching the declared field.
        Nested serializers, alone or as a list's child, are still deep-copied."""
        return {name: copy.deepcopy(field) if _is_nested(field) else copy.copy(field) for name, field in self._declared_fields.items()}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")] for name in unknown}
                )
        return super().to_internal_value(data)
