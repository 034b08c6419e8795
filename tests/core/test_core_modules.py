"""Core module names say what they hold: ``core.errors`` the error type,
``core.exception_handler`` DRF's handler that renders it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parents[2]


def test_the_exception_handler_and_the_error_type_live_in_modules_named_for_them():
    handler = import_string(settings.REST_FRAMEWORK["EXCEPTION_HANDLER"])
    assert handler.__module__ == "core.exception_handler"
    from core import errors

    assert {"ApplicationError", "NotFound"} <= set(vars(errors))
    assert not hasattr(errors, "api_exception_handler")
    # The old, ambiguous name is gone (errors vs exceptions: which is which?).
    assert not (ROOT / "core" / "exceptions.py").exists()
