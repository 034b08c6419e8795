"""Maintenance steps the apps own, run by one command per kind.

Each app registers its steps in ``AppConfig.ready()``::

    maintenance.register(kind=maintenance.REPAIR, name="voices.resend_stuck", fn=_resend_stuck, order=50)

- ``repair`` steps (``manage.py repair``, every minute) put work back on
  track: re-send lost messages, hand back what dead workers held, stop what
  overran. A step returns one clause for the command's report line.
- ``purge`` steps (``manage.py purge_expired``, hourly) delete what retention
  says has expired; with ``context.dry_run`` they only report what they would
  delete.

Steps run by ``order`` (then registration order); each must be safe to
re-run and to run concurrently with itself. A step that raises is logged and
the others still run; the command then exits non-zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

REPAIR = "repair"
PURGE = "purge"
KINDS = (REPAIR, PURGE)


@dataclass(frozen=True)
class Context:
    now: datetime
    dry_run: bool = False  # purge: report what would go, change nothing
    options: Mapping[str, Any] = field(default_factory=dict)  # the command's options (e.g. unsent_after, orphans)


@dataclass
class Outcome:
    summary: str  # one clause of the report line: "resent 2 unsent job(s)"
    keys: list[str] = field(default_factory=list)  # storage keys deleted (dry run: to delete)
    errors: int = 0  # failures the next run retries (a storage delete refused, say)


@dataclass(frozen=True)
class Step:
    kind: str
    name: str
    fn: Callable[[Context], Outcome]
    order: int


@dataclass
class Result:
    step: Step
    outcome: Outcome | None  # None: the step raised
    error: Exception | None = None


_steps: dict[tuple[str, str], Step] = {}


def register(*, kind: str, name: str, fn: Callable[[Context], Outcome], order: int = 100) -> None:
    """Add a step (or replace the one registered under the same kind and name)."""
    if kind not in KINDS:
        raise ValueError(f"unknown maintenance kind {kind!r}; one of {KINDS}")
    _steps[(kind, name)] = Step(kind=kind, name=name, fn=fn, order=order)


def steps(kind: str) -> list[Step]:
    return sorted((step for step in _steps.values() if step.kind == kind), key=lambda step: step.order)


def run(kind: str, *, context: Context) -> list[Result]:
    results = []
    for step in steps(kind):
        try:
            results.append(Result(step=step, outcome=step.fn(context)))
        except Exception as exc:  # the other steps still run; the command reports the failure
            logger.exception("maintenance step failed", extra={"step": step.name})
            results.append(Result(step=step, outcome=None, error=exc))
    return results


def failed(results: list[Result]) -> list[str]:
    return [result.step.name for result in results if result.outcome is None]


def summaries(results: list[Result]) -> list[str]:
    return [
        result.outcome.summary if result.outcome is not None else f"{result.step.name} failed ({type(result.error).__name__})"
        for result in results
    ]
