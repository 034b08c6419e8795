import logging

from core.context import job_id_var, request_id_var


class ContextFilter(logging.Filter):
    """Adds request_id and job_id to every record (None when not set)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = (
            getattr(record, "request_id", None)
            or request_id_var.get()
            # django.request logs a 4xx/5xx after the middleware has returned: its record carries the request.
            or getattr(getattr(record, "request", None), "request_id", None)
        )
        record.job_id = getattr(record, "job_id", None) or job_id_var.get()
        return True


JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job_id)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger"}


def json_logging_config(level: str = "INFO", *, loggers: dict | None = None) -> dict:
    """One dictConfig for every process (Django's LOGGING, gunicorn's
    logconfig_dict): JSON lines on stderr with request_id and job_id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "core.logging.ContextFilter"}},
        "formatters": {"json": {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FIELDS, "rename_fields": JSON_RENAMES}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["context"], "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers or {},
    }
