import logging

from core.context import job_id_var, request_id_var


class ContextFilter(logging.Filter):
    """Adds request_id and job_id to every record (None when not set)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.job_id = getattr(record, "job_id", None) or job_id_var.get()
        return True
