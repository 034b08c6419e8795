"""Tenant reads: this month's usage."""

from __future__ import annotations

from tenants.models import Tenant, UsagePeriod
from tenants.services import usage_period


def usage_get(*, tenant: Tenant, period: str | None = None) -> UsagePeriod:
    """This month's counters (an unsaved zero row if nothing happened yet)."""
    period = period or usage_period()
    return UsagePeriod.objects.filter(tenant=tenant, period=period).first() or UsagePeriod(tenant=tenant, period=period)
