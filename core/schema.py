"""OpenAPI (drf-spectacular): the bearer-key scheme, the one error shape on
every operation, and small helpers for documenting plain-dict responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import serializers

# Every operation may answer these with the error shape (README: Errors).
_COMMON_ERRORS = {
    "400": "Invalid request (validation_error, malformed_request, ...)",
    "401": "Missing or invalid API key",
    "403": "Forbidden (tenant_suspended, priority_not_allowed, ...)",
    "404": "Not found (also another tenant's object)",
    "405": "Method not allowed",
    "406": "Not acceptable",
    "413": "Request body too large",
    "415": "Unsupported media type",
    "429": "Rate limited (rate_limited) or too many active jobs",
}
_POST_ERRORS = {"409": "Conflict", "422": "Idempotency key reused"}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <prefix>.<secret>`"}


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details", "request_id"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object", "additionalProperties": True},
                    "request_id": {"type": "string", "nullable": True},
                },
            }
        },
    }


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: the error shape for every error status an
    operation can return, and the RateLimit headers' meaning."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _error_schema()
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            errors = dict(_COMMON_ERRORS)
            if method in ("post", "patch", "delete"):
                errors.update(_POST_ERRORS)
            if path.startswith("/v1/tts"):
                errors["402"] = "Monthly generated-seconds quota used up (quota_exceeded)"
            if path.endswith("/result"):
                errors["409"] = "The job has no result yet (result_not_ready)"
                errors["410"] = "The result expired (result_expired)"
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                if not any(parameter.get("name") == "Idempotency-Key" for parameter in parameters):
                    parameters.append(
                        {
                            "in": "header",
                            "name": "Idempotency-Key",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 255},
                            "description": "Repeat the request safely: the same key and body within 24 h return the first response.",
                        }
                    )
            for status, description in errors.items():
                responses.setdefault(status, {"description": description, "content": {"application/json": {"schema": ref}}})
    return result


def page_of(serializer: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """A cursor page: ``{next, previous, results}``."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )()
