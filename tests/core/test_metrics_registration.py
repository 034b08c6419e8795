"""Apps register the state /metrics reads at scrape time (core imports no
app); a reader that fails marks its dependency down and fails nothing else."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from core import metrics

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("redis_url")]


@pytest.fixture
def readers(monkeypatch) -> dict:
    registered = dict(metrics._state_readers)
    monkeypatch.setattr(metrics, "_state_readers", registered)
    return registered


def _scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _up(samples: dict[str, list]) -> dict[str, float]:
    return {s.labels["dependency"]: s.value for s in samples["mynah_dependency_up"]}


def test_the_jobs_app_registers_its_readers(readers):
    assert {name: dependency for name, (dependency, _) in readers.items()}.items() >= {"jobs": "database", "queues": "redis"}.items()
    assert {read.__module__ for _, read in readers.values()} >= {"jobs.metrics"}


def test_a_registered_reader_is_scraped_and_a_failing_one_marks_its_dependency_down(client, readers):
    def widgets():
        family = GaugeMetricFamily("mynah_test_widgets", "Widgets.", labels=["color"])
        family.add_metric(["blue"], 3)
        return [family]

    def broken():
        raise ConnectionError("the widget store is down")

    metrics.register_state(name="widgets", dependency="widget-store", read=widgets)
    samples = _scrape(client)
    assert [(s.labels, s.value) for s in samples["mynah_test_widgets"]] == [({"color": "blue"}, 3)]
    assert _up(samples)["widget-store"] == 1

    metrics.register_state(name="widget-extras", dependency="widget-store", read=broken)
    samples = _scrape(client)
    assert _up(samples) == {"database": 1, "redis": 1, "widget-store": 0}
    assert "mynah_jobs" in samples  # the others still report


def test_runplatforms_demo_key_rotates_through_the_tenants_commands(db):
    """make run's demo key, made with tenants' commands (core imports no app):
    a second run replaces the first key."""
    from core.management.commands.runplatform import DEMO_KEY_NAME, Command
    from tenants.models import ApiKey

    first = Command(stdout=io.StringIO())._demo_key()
    second = Command(stdout=io.StringIO())._demo_key()
    keys = ApiKey.objects.filter(tenant__slug="demo", name=DEMO_KEY_NAME)
    assert first != second and keys.count() == 2 and keys.filter(revoked=False).count() == 1
    assert ApiKey.objects.get_from_key(second).revoked is False
    out = io.StringIO()
    call_command("create_tenant", "demo", "--exist-ok", stdout=out)
    assert "exists" in out.getvalue()
