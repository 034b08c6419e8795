"""django_dramatiq's ``rundramatiq`` (same options, same task discovery),
exec'ing Dramatiq through ``core.dramatiq_main`` so that every line the
worker writes, the master's included, is JSON."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO, cast
from unittest import mock

from django.core.management.base import OutputWrapper
from django_dramatiq.management.commands import rundramatiq

logger = logging.getLogger("dramatiq.rundramatiq")


class _LogLines:
    """Its " * Discovered tasks module" lines go to the (JSON) log too."""

    def write(self, text: str) -> None:
        if text.strip():
            logger.info(text.strip(" *\n"))

    def flush(self) -> None:
        pass


class Command(rundramatiq.Command):
    def handle(self, *args, **options):
        self.stdout = OutputWrapper(cast(TextIO, _LogLines()))  # write() and flush() are all it uses

        def exec_json_logging(_path: str, argv: list[str]) -> None:
            # argv[0] is "dramatiq"; the rest are the options django_dramatiq built.
            os.execv(sys.executable, [sys.executable, "-m", "core.dramatiq_main", *argv[1:]])

        # django_dramatiq builds the command line and execs the `dramatiq`
        # script; only the exec is replaced.
        with mock.patch.object(rundramatiq.os, "execvp", exec_json_logging):
            super().handle(*args, **options)
