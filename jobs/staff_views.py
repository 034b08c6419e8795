"""Staff pages outside the model admin: the operations dashboard."""

from __future__ import annotations

import logging

import redis
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from jobs.selectors import dashboard_stats, queue_depths

logger = logging.getLogger(__name__)

DASHBOARD_REFRESH_S = 5


def dashboard(request: HttpRequest) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Operations dashboard", "refresh_s": DASHBOARD_REFRESH_S}
    return TemplateResponse(request, "admin/mynah/dashboard.html", context)


def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The dashboard's numbers; the page polls this every few seconds."""
    try:
        window = max(5, min(int(request.GET.get("window", 60)), 24 * 60))
    except ValueError:
        window = 60
    stats = dashboard_stats(now=timezone.now(), window_minutes=window)
    try:
        stats["queues"] = queue_depths()
    except redis.RedisError as exc:  # the page still shows what the database knows
        logger.warning("dashboard: Redis unavailable", exc_info=True)
        stats["queues"], stats["queues_error"] = [], type(exc).__name__
    response = JsonResponse(stats)
    response["Cache-Control"] = "no-store"
    return response
