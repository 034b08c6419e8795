"""Gunicorn settings for the API. Threads serve concurrent clients cheaply:
requests are short (validate, insert, enqueue) and mostly wait on I/O."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "0") == "1" else None
# gunicorn's control socket defaults to one fixed path per user, which several
# instances on one host (tests, multi-instance runs) would fight over.
control_socket_disable = True
