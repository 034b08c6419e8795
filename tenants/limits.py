"""A tenant's effective limits: its own values, else the deployment's defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

from tenants.models import Tenant


@dataclass(frozen=True)
class TenantLimits:
    rate_limit_per_minute: int
    key_rate_limit_per_minute: int
    max_active_jobs: int
    monthly_seconds_quota: int  # 0: unlimited
    max_in_flight: int
    max_in_flight_cost: int  # per kind of job, in seconds of speech (see jobs.services.cost)
    max_job_duration_s: int
    max_webhook_endpoints: int
    max_webhooks_in_flight: int
    allow_high_priority: bool
    result_retention_days: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _at_least_one(value: int) -> int:
    return max(1, value)  # a zero limit would block everything silently


def tenant_limits(tenant: Tenant) -> TenantLimits:
    return TenantLimits(
        rate_limit_per_minute=_at_least_one(_pick(tenant.rate_limit_per_minute, settings.TENANT_RATE_LIMIT_PER_MINUTE)),
        key_rate_limit_per_minute=_at_least_one(_pick(tenant.key_rate_limit_per_minute, settings.TENANT_KEY_RATE_LIMIT_PER_MINUTE)),
        max_active_jobs=_at_least_one(_pick(tenant.max_active_jobs, settings.TENANT_MAX_ACTIVE_JOBS)),
        monthly_seconds_quota=_pick(tenant.monthly_seconds_quota, settings.TENANT_MONTHLY_SECONDS_QUOTA),
        max_in_flight=_at_least_one(_pick(tenant.max_in_flight, settings.TENANT_MAX_IN_FLIGHT)),
        max_in_flight_cost=_at_least_one(_pick(tenant.max_in_flight_cost, settings.TENANT_MAX_IN_FLIGHT_COST)),
        max_job_duration_s=_at_least_one(_pick(tenant.max_job_duration_s, settings.TENANT_MAX_JOB_DURATION_S)),
        max_webhook_endpoints=_at_least_one(_pick(tenant.max_webhook_endpoints, settings.TENANT_MAX_WEBHOOK_ENDPOINTS)),
        max_webhooks_in_flight=_at_least_one(_pick(tenant.max_webhooks_in_flight, settings.TENANT_MAX_WEBHOOKS_IN_FLIGHT)),
        allow_high_priority=tenant.allow_high_priority,
        result_retention_days=_at_least_one(_pick(tenant.result_retention_days, settings.JOB_RESULT_RETENTION_DAYS)),
    )
