"""Tenant reads: this month's usage."""

from __future__ import annotations

from tenants.models import Tenant, UsagePeriod
from tenants.services import usage_period


def usage_get(*, tenant: Tenant, period: str | None = None) -> UsagePeriod:
    """This month's counters (an unsaved zero row if nothing happened yet)."""
    period = period or usage_period()
    try:
        return UsagePeriod.objects.get(tenant=tenant, period=period)  # unique together; get() compiles no ORDER BY
    except UsagePeriod.DoesNotExist:
        return UsagePeriod(tenant=tenant, period=period)
