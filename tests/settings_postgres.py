"""The test settings on a real PostgreSQL: `make test` runs the suite a second
time with ``--ds=tests.settings_postgres``. A throwaway cluster starts when
these settings load (once per test run) and is removed at exit."""

import atexit
import os

import dj_database_url

from config.test_settings import *  # noqa: F403
from harness.postgres import PostgresCluster

_cluster = PostgresCluster().init().start()
atexit.register(_cluster.remove)
# Integration stacks (harness/stack.py) take a fresh database in this cluster.
os.environ["MYNAH_TEST_POSTGRES_URL"] = _cluster.url("postgres")

DATABASES = {
    "default": {
        **dj_database_url.parse(_cluster.url("postgres"), conn_max_age=0, conn_health_checks=True),
        "TEST": {"NAME": "mynah_test"},
    }
}
