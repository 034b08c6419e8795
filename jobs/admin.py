"""Jobs in the admin: find them (filters, search by id or metadata), see
them (progress, input, result with a player, error), act on them (rerun,
cancel, requeue, all through the services and audited). Every value shown
comes through format_html or the admin's own escaping: job text, metadata and
error messages are user input."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from audit.admin_mixins import AuditedAdminMixin
from core.context import client_ip
from core.errors import ApplicationError
from core.storage import signed_url, storage_is_local, stored_file_response
from jobs import services
from jobs.models import Job


def _staff(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def _pretty(value: Any) -> str:
    if not value:
        return "-"
    return format_html('<pre class="mynah-json">{}</pre>', json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


def _seconds(start: Any, end: Any) -> str:
    return f"{(end - start).total_seconds():.2f} s" if start and end else "-"


@admin.register(Job)
class JobAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("short_id", "tenant", "kind", "engine", "status", "progress_bar", "stage", "attempts", "error_code", "created_at")
    list_filter = ("status", "kind", "engine", "priority", "cache_hit", ("created_at", admin.DateFieldListFilter), "tenant")
    search_fields = ("metadata", "error_code", "error_message")  # and ids: get_search_results
    search_help_text = "A job id, or text in its metadata or error."
    date_hierarchy = "created_at"
    list_select_related = ("tenant",)
    list_per_page = 50
    actions = ["rerun_selected", "cancel_selected", "requeue_selected"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "tenant",
                    "kind",
                    "engine",
                    "priority",
                    "status",
                    "progress_bar",
                    "stage",
                    "attempts",
                    "cache_hit",
                    "dedup_of",
                )
            },
        ),
        ("Input", {"fields": ("input_pretty", "metadata_pretty", "voice", "webhook_url")}),
        ("Result", {"fields": ("player", "result_summary", "result_info_pretty", "result_expires_at")}),
        ("Error", {"fields": ("error_code", "error_message")}),
        ("Timing", {"fields": ("created_at", "enqueued_at", "started_at", "finished_at", "heartbeat_at", "queue_wait", "run_time")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        # Every entry of these fieldsets is one field name (no grouped rows).
        return [name for _, options in self.fieldsets for name in options["fields"]]  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are submitted through the API

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False  # purge_expired removes their files; rows stay for the record

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Job], search_term: str):
        term = search_term.strip()
        try:  # an id, with or without hyphens: exact match (ids are stored as UUIDs)
            return queryset.filter(id=uuid.UUID(term)), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    # ------------------------------------------------------------ display
    @admin.display(description="id")
    def short_id(self, job: Job) -> str:
        return str(job.id)[:8]

    @admin.display(description="progress")
    def progress_bar(self, job: Job) -> str:
        return format_html(
            '<progress class="mynah-progress mynah-{}" max="100" value="{}" title="{} %">{} %</progress> {} %',
            job.status,
            job.progress,
            job.progress,
            job.progress,
            job.progress,
        )

    @admin.display(description="input")
    def input_pretty(self, job: Job) -> str:
        return _pretty(job.input)

    @admin.display(description="metadata")
    def metadata_pretty(self, job: Job) -> str:
        return _pretty(job.metadata)

    @admin.display(description="measurements")
    def result_info_pretty(self, job: Job) -> str:
        return _pretty(job.result_info)

    @admin.display(description="files")
    def result_summary(self, job: Job) -> str:
        files = job.stored_results()
        if not files:
            return "-"
        return format_html_join(
            "",
            "<div>{}: {} · {} bytes · {} s</div>",
            ((role, item["content_type"], item.get("size_bytes") or "?", item.get("duration_s") or "?") for role, item in files.items()),
        )

    @admin.display(description="player")
    def player(self, job: Job) -> str:
        files = job.stored_results()
        if job.status == Job.Status.EXPIRED:
            return "The result expired and was deleted."
        if not files:
            return "-"
        players = []
        for role, item in files.items():
            url = reverse("admin:jobs_job_result", args=[job.pk, role])
            tag = "video" if item["content_type"].startswith("video/") else "audio"
            players.append((role, tag, url, tag))
        return format_html_join("", '<div class="mynah-player"><span>{}</span><{} controls preload="none" src="{}"></{}></div>', players)

    @admin.display(description="queue wait")
    def queue_wait(self, job: Job) -> str:
        return _seconds(job.enqueued_at or job.created_at, job.started_at)

    @admin.display(description="run time")
    def run_time(self, job: Job) -> str:
        return _seconds(job.started_at, job.finished_at)

    # ------------------------------------------------------------- files
    def get_urls(self):
        view = self.admin_site.admin_view(self.result_view)
        return [path("<uuid:job_id>/result/<slug:role>/", view, name="jobs_job_result"), *super().get_urls()]

    def result_view(self, request: HttpRequest, job_id: uuid.UUID, role: str) -> HttpResponse | FileResponse:
        job = get_object_or_404(Job, pk=job_id)
        item = job.stored_results().get(role)
        if not self.has_view_permission(request, job) or item is None or job.status == Job.Status.EXPIRED:
            raise Http404
        if not storage_is_local():
            return HttpResponseRedirect(signed_url(item["key"])[0])
        try:
            return stored_file_response(item["key"], content_type=item["content_type"])
        except FileNotFoundError:
            raise Http404 from None

    # ----------------------------------------------------------- actions
    def _each(self, request: HttpRequest, queryset: QuerySet[Job], action: Any, verb: str) -> None:
        done = 0
        for job in queryset.select_related("tenant"):
            try:
                action(job=job, actor=_staff(request), ip=client_ip(request))
                done += 1
            except ApplicationError as exc:
                messages.warning(request, f"{job.id}: {exc.message}")
        if done:
            self.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)

    @admin.action(description="Run selected failed or canceled jobs again")
    def rerun_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, services.job_rerun, "Started again")

    @admin.action(description="Cancel selected queued or running jobs")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, services.job_cancel, "Canceled")

    @admin.action(description="Requeue selected stuck jobs (queued or running)")
    def requeue_selected(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._each(request, queryset, services.job_requeue, "Requeued")


# django_dramatiq's Task admin stays empty (its AdminMiddleware is not used:
# Job rows are the record of work), so hide it rather than mislead staff.
try:
    from django_dramatiq.models import Task

    admin.site.unregister(Task)
except (ImportError, NotRegistered):
    pass
