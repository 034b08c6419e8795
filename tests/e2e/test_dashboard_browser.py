"""The staff operations dashboard in a real browser: admin login, tiles
computed from seeded jobs, live refresh, charts that really draw (checked
from screenshot pixels), the error banner, and data shown only as text.

Browser tests are marked ``integration`` (they start Chromium and use the
live server). ORM work happens before the browser opens: see tests/support/browser.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from PIL import Image, ImageChops

from jobs import staff_views
from jobs.models import Job
from tenants.models import Tenant
from tests.support.browser import PHONE_VIEWPORT, chromium_session

USERNAME = "ops-staff"
PASSWORD = "correct-horse-battery-staple"
ROOT = "#ops-dashboard"
EVIL_SLUG = "<img src=x onerror=alert(1)>"
EVIL_CODE = "<b onmouseover=alert(2)>boom</b>"

# Pixel check: a dataset counts as drawn when at least this many pixels of
# the plot area have its colour (within COLOR_TOLERANCE per channel), and
# a chart as drawn when its plot area has this many saturated pixels.
COLOR_TOLERANCE = 10
MIN_DATASET_PIXELS = 30
MIN_SATURATED_PIXELS = 400


# ------------------------------------------------------------------ seeding
@dataclass(frozen=True)
class Seed:
    tenant: str
    kind: str
    status: str
    created_min_ago: float
    wait_s: float | None = None  # started_at = created_at + wait_s
    run_s: float | None = None  # finished_at = started_at + run_s
    error_code: str = ""
    cache_hit: bool = False

    @property
    def finished_min_ago(self) -> float | None:
        if self.cache_hit:
            return self.created_min_ago
        if self.run_s is None:
            return None
        return self.created_min_ago - (self.wait_s + self.run_s) / 60


T, TH = Job.Kind.TTS, Job.Kind.TALKING_HEAD
S = Job.Status
# Minute offsets stay clear of the 5-minute and 60-minute edges, so the page
# (loaded a few seconds after seeding) sees the same buckets.
SEEDS = [
    # Speech, succeeded, spread over the hour
    *(
        Seed(tenant, T, S.SUCCEEDED, ago, wait_s=2 + i, run_s=6 + i)
        for i, (tenant, ago) in enumerate(
            [
                ("acme-audio", 1.5),
                ("acme-audio", 2.5),
                ("globex", 3.5),
                ("acme-audio", 12),
                ("globex", 18),
                ("initech", 25),
                ("acme-audio", 33),
                ("umbrella", 41),
                ("acme-audio", 47),
                ("globex", 52),
            ]
        )
    ),
    # Talking head, succeeded: slower to start and to run
    Seed("initech", TH, S.SUCCEEDED, 4.0, wait_s=12, run_s=40),
    Seed("globex", TH, S.SUCCEEDED, 22, wait_s=20, run_s=55),
    Seed("umbrella", TH, S.SUCCEEDED, 50, wait_s=9, run_s=35),
    # Cache hits: created finished, never run
    Seed("acme-audio", T, S.SUCCEEDED, 2.0, cache_hit=True),
    Seed("globex", T, S.SUCCEEDED, 15, cache_hit=True),
    Seed("acme-audio", T, S.SUCCEEDED, 30, cache_hit=True),
    # Failures: a burst at ~28 min (with one success in the same minute) and a few more
    Seed("initech", T, S.FAILED, 3.0, wait_s=1, run_s=3, error_code="engine_error"),
    Seed("umbrella", T, S.FAILED, 28.5, wait_s=1, run_s=2, error_code="engine_error"),
    Seed("umbrella", T, S.FAILED, 28.5, wait_s=1, run_s=4, error_code="engine_error"),
    Seed("initech", TH, S.FAILED, 28.5, wait_s=3, run_s=9, error_code="timeout"),
    Seed("umbrella", T, S.SUCCEEDED, 28.5, wait_s=1, run_s=1),
    Seed("globex", T, S.FAILED, 44, wait_s=2, run_s=1, error_code="voice_deleted"),
    # Still active, and one canceled (neither counts as finished)
    Seed("acme-audio", T, S.QUEUED, 0.5),
    Seed("globex", T, S.QUEUED, 2.0),
    Seed("initech", TH, S.RUNNING, 1.5, wait_s=5),
    Seed("umbrella", T, S.CANCELED, 35),
]


def seed_jobs(seeds: list[Seed] = SEEDS, *, extra_tenants: dict[str, Tenant] | None = None) -> dict[str, Tenant]:
    from tenants.services import tenant_create

    tenants = dict(extra_tenants or {})
    now = timezone.now()
    for seed in seeds:
        if seed.tenant not in tenants:
            tenants[seed.tenant] = tenant_create(slug=seed.tenant, name=seed.tenant.title())
        created = now - timedelta(minutes=seed.created_min_ago)
        started = created + timedelta(seconds=seed.wait_s) if seed.wait_s is not None else None
        finished = None
        if seed.cache_hit:
            finished = created
        elif started is not None and seed.run_s is not None:
            finished = started + timedelta(seconds=seed.run_s)
        Job.objects.create(
            tenant=tenants[seed.tenant],
            kind=seed.kind,
            status=seed.status,
            engine="espeak",
            input={"text": "hello"},
            created_at=created,
            enqueued_at=created,
            started_at=started,
            finished_at=finished,
            error_code=seed.error_code,
            error_message="seeded" if seed.error_code else "",
            cache_hit=seed.cache_hit,
            result_duration_s=3.0 if seed.status == S.SUCCEEDED else None,
            progress=100 if finished else 0,
        )
    return tenants


def expected_tiles(seeds: list[Seed] = SEEDS) -> dict[str, str]:
    """The tile texts the page must show, computed the way the spec says."""
    submitted_5 = sum(seed.created_min_ago < 5 for seed in seeds)
    finished = [seed for seed in seeds if seed.status in (S.SUCCEEDED, S.FAILED)]
    finished_5 = sum(seed.finished_min_ago < 5 for seed in finished)
    failed = sum(seed.status == S.FAILED for seed in finished)
    hits = sum(seed.cache_hit for seed in seeds)
    queued = sum(seed.status == S.QUEUED for seed in seeds)
    running = sum(seed.status == S.RUNNING for seed in seeds)
    return {
        "jobs-per-min": f"{submitted_5 / 5:.1f}",
        "jobs-per-min-sub": f"{finished_5 / 5:.1f} finished / min",
        "failure-rate": f"{round(failed / len(finished), 4) * 100:.1f}%",
        "failure-rate-sub": f"{failed} of {len(finished)} finished",
        "cache-rate": f"{round(hits / len(seeds), 4) * 100:.1f}%",
        "cache-rate-sub": f"{hits} of {len(seeds)} jobs",
        "active": str(queued + running),
        "queued": str(queued),
        "running": str(running),
    }


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_superuser(username=USERNAME, email="ops@example.com", password=PASSWORD)


@pytest.fixture
def fast_refresh(monkeypatch):
    monkeypatch.setattr(staff_views, "DASHBOARD_REFRESH_S", 1)


@pytest.fixture
def broker_queues(redis_url):
    """Real messages in the Redis broker the dashboard reads (settings.REDIS_URL):
    on "tts" 4 ready, 1 fetched and unacknowledged (in progress), 2 delayed,
    1 dead-lettered; on "video" 3 ready."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=settings.REDIS_URL, middleware=[])
    for queue in ("tts", "video"):
        broker.declare_queue(queue)

    def message(queue: str) -> dramatiq.Message:
        return dramatiq.Message(queue_name=queue, actor_name="tts_job_run", args=("x",), kwargs={}, options={})

    for _ in range(6):
        broker.enqueue(message("tts"))
    for _ in range(2):
        broker.enqueue(message("tts"), delay=3_600_000)
    for _ in range(3):
        broker.enqueue(message("video"))
    consumer = broker.consume("tts", prefetch=1, timeout=100)
    consumer.nack(next(consumer))  # -> dead letters
    next(consumer)  # fetched, never acknowledged -> in progress
    expected = {
        "tts": {"ready": 4, "in_progress": 1, "delayed": 2, "dead": 1},
        "video": {"ready": 3, "in_progress": 0, "delayed": 0, "dead": 0},
    }
    yield expected
    consumer.close()
    broker.flush_all()
    broker.client.zrem(f"{broker.namespace}:__heartbeats__", broker.broker_id)
    broker.close()


# ------------------------------------------------------------------ browser
def admin_login(page, base_url: str, path: str) -> None:
    """Through the real admin login form, landing on ``path``."""
    page.goto(base_url + path)
    page.wait_for_url(re.compile(r"/admin/login/\?next="))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form [type=submit]")
    page.wait_for_url(re.compile(re.escape(path) + "$"))


def wait_ready(page) -> None:
    page.wait_for_selector(f'{ROOT}[data-ready="1"]', timeout=15_000)


def refreshed(page) -> int:
    return int(page.get_attribute(ROOT, "data-refreshed"))


def wait_refreshed_past(page, count: int) -> None:
    page.wait_for_function(f"() => Number(document.querySelector('{ROOT}').dataset.refreshed) > {count}", timeout=15_000)


def tile_text(page, tile: str, part: str = ".ops-tile-value") -> str:
    return page.locator(f'[data-tile="{tile}"] {part}').text_content().strip()


CHART_INFO_JS = """() => [...document.querySelectorAll('[data-chart] canvas')].map((canvas) => {
  const chart = Chart.getChart(canvas);
  const rect = canvas.getBoundingClientRect();
  const area = chart.chartArea;
  const entries = [];
  chart.data.datasets.forEach((dataset) => {
    if (Array.isArray(dataset.backgroundColor)) {  // doughnut: one colour per slice
      dataset.data.forEach((value, i) => entries.push({label: chart.data.labels[i], color: dataset.backgroundColor[i], value: value || 0}));
    } else {
      const color = chart.config.type === 'line' ? dataset.borderColor : dataset.backgroundColor;
      entries.push({label: dataset.label, color, value: Math.max(0, ...dataset.data.map((v) => v || 0))});
    }
  });
  return {
    name: canvas.closest('[data-chart]').dataset.chart,
    labels: chart.data.labels,
    data: chart.data.datasets.map((dataset) => dataset.data),
    // the plot area (axes and legend left out, since a legend has the colours too), in page coordinates
    box: {x: rect.left + window.scrollX + area.left, y: rect.top + window.scrollY + area.top,
          width: area.right - area.left, height: area.bottom - area.top},
    entries,
  };
})"""


def charts_info(page) -> dict[str, dict]:
    return {chart["name"]: chart for chart in page.evaluate(CHART_INFO_JS)}


def _hex_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def color_pixels(image: Image.Image, rgb: tuple[int, int, int], tolerance: int = COLOR_TOLERANCE) -> int:
    """Pixels within ``tolerance`` of ``rgb`` on every channel."""
    diff = ImageChops.difference(image, Image.new("RGB", image.size, rgb))
    red, green, blue = diff.split()
    worst = ImageChops.lighter(red, ImageChops.lighter(green, blue))
    return sum(worst.histogram()[: tolerance + 1])


def saturated_pixels(image: Image.Image, minimum: int = 80) -> int:
    """Coloured pixels: not the white/dark background, not gray grid or text."""
    _, saturation, value = image.convert("HSV").split()
    mask = ImageChops.multiply(saturation.point(lambda s: 255 if s >= minimum else 0), value.point(lambda v: 255 if v >= 60 else 0))
    return mask.histogram()[255]


def check_chart_pixels(screenshot_path, page) -> dict[str, dict[str, int]]:
    """Every chart's plot area, cut from the full-page screenshot, has
    coloured pixels, and every dataset (slice) with data shows its colour."""
    screenshot = Image.open(screenshot_path).convert("RGB")
    scale = screenshot.width / page.evaluate("document.documentElement.scrollWidth")
    found: dict[str, dict[str, int]] = {}
    for name, chart in charts_info(page).items():
        box = chart["box"]
        assert box["width"] > 50 and box["height"] > 50, (name, box)
        left, top = box["x"] * scale, box["y"] * scale
        crop = screenshot.crop((round(left), round(top), round(left + box["width"] * scale), round(top + box["height"] * scale)))
        counts = {"saturated": saturated_pixels(crop)}
        assert counts["saturated"] >= MIN_SATURATED_PIXELS, f"chart {name!r} looks blank: {counts}"
        for entry in chart["entries"]:
            if entry["value"] > 0:
                counts[entry["label"]] = color_pixels(crop, _hex_rgb(entry["color"]))
                what = f"chart {name!r}: {entry['label']!r} ({entry['color']}) not drawn: {counts}"
                assert counts[entry["label"]] >= MIN_DATASET_PIXELS, what
        found[name] = counts
    return found


# -------------------------------------------------------------------- tests
@pytest.mark.integration
def test_dashboard_shows_seeded_numbers_refreshes_and_draws_every_chart(live_server, staff_user, broker_queues, fast_refresh, redis_url):
    seed_jobs()
    expected = expected_tiles()
    base = live_server.url
    with chromium_session(name="dashboard", locale="en-US", timezone_id="UTC", reduced_motion="reduce") as browser:
        page = browser.page
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        admin_login(page, base, reverse("staff-dashboard"))
        wait_ready(page)

        assert page.title().startswith("Operations dashboard")
        assert page.locator(".breadcrumbs").text_content().split() == [
            "Home",
            "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}",
            "Operations",
            "dashboard",
        ]
        assert page.get_attribute(ROOT, "data-refresh-s") == "1"
        assert tile_text(page, "jobs-per-min") == expected["jobs-per-min"]
        assert tile_text(page, "jobs-per-min", ".ops-tile-sub") == expected["jobs-per-min-sub"]
        assert tile_text(page, "failure-rate") == expected["failure-rate"]
        assert tile_text(page, "failure-rate", ".ops-tile-sub") == expected["failure-rate-sub"]
        assert tile_text(page, "cache-rate") == expected["cache-rate"]
        assert tile_text(page, "cache-rate", ".ops-tile-sub") == expected["cache-rate-sub"]
        assert tile_text(page, "active") == expected["active"]
        assert tile_text(page, "active", '[data-field="queued"]') == expected["queued"]
        assert tile_text(page, "active", '[data-field="running"]') == expected["running"]
        first_refresh = tile_text(page, "refreshed")
        assert re.fullmatch(r"\d\d:\d\d:\d\d", first_refresh)

        # A later poll updates the page in place (no reload: the marker survives).
        page.evaluate(f"document.querySelector('{ROOT}').dataset.sameDocument = 'yes'")
        count = refreshed(page)
        wait_refreshed_past(page, count)
        wait_refreshed_past(page, count + 1)
        assert page.get_attribute(ROOT, "data-same-document") == "yes"
        assert tile_text(page, "refreshed") != first_refresh  # two polls, a second apart, later
        assert tile_text(page, "failure-rate") == expected["failure-rate"]

        charts = charts_info(page)
        assert set(charts) == {"throughput", "queues", "latency", "failures", "tenants", "cache"}
        queues = charts["queues"]
        for queue, depths in broker_queues.items():
            index = queues["labels"].index(queue)
            expected_depths = [depths["ready"], depths["in_progress"], depths["delayed"], depths["dead"]]
            assert [series[index] for series in queues["data"]] == expected_depths
        assert sum(charts["throughput"]["data"][0]) == len(SEEDS)
        assert charts["failures"]["labels"] == ["engine_error", "timeout", "voice_deleted"]
        assert charts["failures"]["data"] == [[3, 1, 1]]
        assert charts["tenants"]["labels"][0] == "acme-audio"
        assert charts["cache"]["data"] == [[3, len(SEEDS) - 3]]
        assert page.locator("#ops-error").is_hidden()
        assert page.locator("#ops-queues-error").is_hidden()

        page.mouse.move(0, 0)  # no hover highlight or tooltip in the screenshot
        shot = browser.screenshot("dashboard-desktop")
        counts = check_chart_pixels(shot, page)
        print("chart pixels:", counts)

        # A shorter window refetches at once and redraws with fewer points.
        page.select_option("#ops-window", "15")
        page.wait_for_function("() => Chart.getChart(document.querySelector('[data-chart=throughput] canvas')).data.labels.length === 15")
        assert tile_text(page, "refreshed", ".ops-tile-sub") == "charts cover the last 15 min"

        phone = browser.new_page(
            viewport=PHONE_VIEWPORT,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            storage_state=page.context.storage_state(),
            locale="en-US",
            timezone_id="UTC",
            reduced_motion="reduce",
        )
        phone.goto(base + reverse("staff-dashboard"))
        wait_ready(phone)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE_VIEWPORT["width"], "horizontal scrolling on a phone"
        assert tile_text(phone, "failure-rate") == expected["failure-rate"]
        browser.screenshot("dashboard-phone", page=phone)

        assert browser.errors == []
        assert browser.dialogs == []
        assert all(url.startswith(base) for url in requests), [url for url in requests if not url.startswith(base)]
        assert any("/static/vendor/chart.js/4.6.1/chart.umd.min.js" in url for url in requests)


@pytest.mark.integration
def test_data_from_tenants_is_shown_as_text_never_as_html(live_server, staff_user, redis_url):
    evil = Tenant.objects.create(slug=EVIL_SLUG, name="Evil")  # bypasses the slug validator on purpose
    seeds = [
        Seed(EVIL_SLUG, T, S.FAILED, 2.0, wait_s=1, run_s=1, error_code=EVIL_CODE),
        Seed(EVIL_SLUG, T, S.SUCCEEDED, 3.0, wait_s=1, run_s=2),
    ]
    seed_jobs(seeds, extra_tenants={EVIL_SLUG: evil})
    with chromium_session(name="dashboard-xss", reduced_motion="reduce") as browser:
        page = browser.page
        admin_login(page, live_server.url, reverse("staff-dashboard"))
        wait_ready(page)
        page.mouse.move(0, 0)
        cells = page.locator("#ops-tenant-rows td:first-child")
        assert cells.all_text_contents() == [EVIL_SLUG]
        assert page.locator("#ops-tenant-rows img, #ops-dashboard img, #ops-dashboard b").count() == 0
        assert page.evaluate("document.querySelectorAll('img[src=x], [onerror], [onmouseover]').length") == 0
        charts = charts_info(page)
        assert charts["tenants"]["labels"] == [EVIL_SLUG]
        assert charts["failures"]["labels"] == [EVIL_CODE]
        browser.screenshot("dashboard-xss")
        assert browser.dialogs == []
        assert browser.errors == []


@pytest.mark.integration
def test_failed_fetches_show_a_banner_that_clears_on_the_next_success(live_server, staff_user, fast_refresh, redis_url):
    seed_jobs(SEEDS[:4])
    data_url = re.compile(re.escape(reverse("staff-dashboard-data")))
    with chromium_session(name="dashboard-errors", reduced_motion="reduce") as browser:
        page = browser.page
        admin_login(page, live_server.url, reverse("staff-dashboard"))
        wait_ready(page)
        banner = page.locator("#ops-error")
        assert banner.is_hidden()

        page.route(data_url, lambda route: route.abort())
        banner.wait_for(state="visible", timeout=10_000)
        assert "Could not refresh the dashboard: network error" in banner.text_content()
        assert "is-stale" in page.get_attribute(ROOT, "class")
        page.unroute(data_url)

        count = refreshed(page)
        wait_refreshed_past(page, count)
        banner.wait_for(state="hidden", timeout=10_000)
        assert "is-stale" not in page.get_attribute(ROOT, "class")

        page.route(data_url, lambda route: route.fulfill(status=500, content_type="text/html", body="<h1>Server Error</h1>"))
        banner.wait_for(state="visible", timeout=10_000)
        assert "HTTP 500" in banner.text_content()
        browser.screenshot("dashboard-error-banner")
        page.unroute(data_url)
        count = refreshed(page)
        wait_refreshed_past(page, count)
        banner.wait_for(state="hidden", timeout=10_000)
        assert tile_text(page, "failure-rate") == expected_tiles(SEEDS[:4])["failure-rate"]

        # Only the refused requests were logged as errors.
        assert browser.errors and all("Failed to load resource" in error for error in browser.errors), browser.errors


@pytest.mark.integration
def test_queue_error_is_shown_when_redis_is_down(live_server, staff_user, settings):
    from core.redis_server import free_port

    seed_jobs(SEEDS[:2])
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with chromium_session(name="dashboard-redis-down", reduced_motion="reduce") as browser:
        page = browser.page
        admin_login(page, live_server.url, reverse("staff-dashboard"))
        wait_ready(page)
        warning = page.locator("#ops-queues-error")
        assert warning.is_visible()
        assert page.locator("[data-chart=queues] .ops-empty").is_visible()
        assert "Queue depths unavailable (ConnectionError)" in warning.text_content()
        assert page.locator("[data-chart=queues] .ops-empty").text_content() == "Queue depths unavailable."
        assert page.locator("#ops-error").is_hidden()
        assert browser.errors == []


@pytest.mark.parametrize("name", ["staff-dashboard", "staff-dashboard-data"])
def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(client, db, name, redis_url):
    url = reverse(name)
    login = reverse("admin:login")
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{login}?next=")

    user = get_user_model().objects.create_user(username="customer", password=PASSWORD)
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"{login}?next=")

    user.is_staff = True
    user.save()
    response = client.get(url)
    assert response.status_code == 200
    if name == "staff-dashboard-data":
        assert response["Content-Type"] == "application/json"
        assert {"throughput", "failures", "cache", "active", "queues"} <= set(response.json())
    else:
        assert f'data-url="{reverse("staff-dashboard-data")}"'.encode() in response.content
