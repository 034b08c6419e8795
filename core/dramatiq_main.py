"""Dramatiq's command line, with the master process logging JSON lines like
the worker processes (Django's LOGGING). Dramatiq formats the master's own
lines (boot, shutdown, a worker process that died) with a fixed text format;
log shippers then see two formats in one stream.

Run by ``manage.py rundramatiq`` (core's override of django_dramatiq's)."""

from __future__ import annotations

import logging
import sys

import dramatiq.cli
from pythonjsonlogger.json import JsonFormatter

from core.logging import JSON_FIELDS, JSON_RENAMES, ContextFilter

_dramatiq_setup_parent_logging = dramatiq.cli.setup_parent_logging


def setup_parent_logging(args, *, stream=sys.stderr):
    logger = _dramatiq_setup_parent_logging(args, stream=stream)
    for handler in logging.getLogger().handlers:  # the same fields as config.settings.LOGGING
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES))
        handler.addFilter(ContextFilter())
    return logger


dramatiq.cli.setup_parent_logging = setup_parent_logging

if __name__ == "__main__":
    sys.exit(dramatiq.cli.main())
