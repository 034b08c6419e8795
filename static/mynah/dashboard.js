/* Mynah operations dashboard: polls the staff data URL and updates the
 * tiles and Chart.js charts in place. Everything that comes from the data
 * (tenant slugs, error codes, queue names) goes in as text: textContent or
 * chart labels, never innerHTML. */
(() => {
  "use strict";

  const root = document.getElementById("ops-dashboard");
  if (!root || !window.Chart) {
    return;
  }
  const Chart = window.Chart;

  // Dataset colours: opaque, so the browser tests can find them in a screenshot.
  const COLORS = {
    primary: "#2f5d50",
    ready: "#2f5d50",
    inProgress: "#3a86c8",
    delayed: "#e0a030",
    dead: "#c0392b",
    submitted: "#3a86c8",
    finished: "#2f5d50",
    failed: "#c0392b",
    p50: "#7fbfa8",
    p95: "#2f5d50",
    failures: "#c0392b",
    tenants: "#3a86c8",
    hits: "#2f5d50",
    misses: "#e0a030",
  };
  const KIND_LABELS = { tts: "Speech", talking_head: "Talking head" };

  const baseUrl = root.dataset.url;
  const refreshMs = Math.max(1, Number(root.dataset.refreshS) || 5) * 1000;
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  const $ = (selector, scope = root) => scope.querySelector(selector);

  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const percent = (rate) => `${(rate * 100).toFixed(1)}%`;
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  const minuteLabel = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });

  let windowMinutes = Number($("#ops-window").value) || 60;
  let refreshed = 0;
  let failed = 0;
  let timer = null;
  let inFlight = null;
  let lastSuccess = null;

  // ------------------------------------------------------------------ theme
  const css = (name, fallback) => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

  function themeColors() {
    return { text: css("--body-quiet-color", "#666"), grid: css("--hairline-color", "#e8e8e8"), bg: css("--body-bg", "#fff") };
  }

  function applyTheme() {
    const theme = themeColors();
    Chart.defaults.color = theme.text;
    Chart.defaults.borderColor = theme.grid;
    Object.values(charts).forEach((chart) => {
      Object.values(chart.options.scales || {}).forEach((scale) => {
        scale.ticks.color = theme.text;
        scale.grid.color = theme.grid;
      });
      if (chart.config.type === "doughnut") {
        chart.data.datasets.forEach((dataset) => { dataset.borderColor = theme.bg; });
      }
      chart.options.plugins.legend.labels.color = theme.text;
      chart.update("none");
    });
  }

  // ----------------------------------------------------------------- charts
  Chart.defaults.font.family = css("--font-family-primary", "sans-serif");
  Chart.defaults.font.size = 12;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.animation = reducedMotion ? false : { duration: 500 };
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.plugins.legend.labels.boxHeight = 12;

  const canvasOf = (name) => $(`[data-chart="${name}"] canvas`);
  // Long category labels (tenant slugs, error codes) are shortened on the axis; tooltips show them whole.
  const shortLabels = {
    callback(value) {
      const label = String(this.getLabelForValue(value));
      return label.length > 22 ? `${label.slice(0, 21)}…` : label;
    },
  };
  // The hit rate in the middle of the cache doughnut, drawn on the canvas.
  const centerText = {
    id: "opsCenterText",
    afterDraw(chart) {
      const text = chart.options.plugins.opsCenterText?.text;
      if (!text || !chart.getDatasetMeta(0).data.length) return;
      const arc = chart.getDatasetMeta(0).data[0];
      const { ctx } = chart;
      ctx.save();
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillStyle = css("--body-loud-color", "#000");
      ctx.font = `600 ${Math.max(14, Math.round(arc.innerRadius / 3))}px ${Chart.defaults.font.family}`;
      ctx.fillText(text, arc.x, arc.y - 6);
      ctx.fillStyle = css("--body-quiet-color", "#666");
      ctx.font = `12px ${Chart.defaults.font.family}`;
      ctx.fillText("hit rate", arc.x, arc.y + Math.max(12, arc.innerRadius / 4));
      ctx.restore();
    },
  };
  const countAxis = (extra = {}) => ({ beginAtZero: true, ticks: { precision: 0 }, ...extra });
  const bar = (label, color, extra = {}) => ({
    label, data: [], backgroundColor: color, borderColor: color, borderWidth: 0, hoverBackgroundColor: color, ...extra,
  });
  const line = (label, color) => ({
    label, data: [], borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 0, pointHoverRadius: 3, cubicInterpolationMode: "monotone",
  });

  const charts = {
    throughput: new Chart(canvasOf("throughput"), {
      type: "line",
      data: { labels: [], datasets: [line("Submitted", COLORS.submitted), line("Finished", COLORS.finished), line("Failed", COLORS.failed)] },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { grid: { display: false }, ticks: { autoSkip: true, maxTicksLimit: 8, maxRotation: 0 } },
          y: countAxis(),
        },
      },
    }),
    queues: new Chart(canvasOf("queues"), {
      type: "bar",
      data: {
        labels: [],
        datasets: [
          bar("Ready", COLORS.ready), bar("In progress", COLORS.inProgress), bar("Delayed", COLORS.delayed), bar("Dead", COLORS.dead),
        ],
      },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: true, grid: { display: false } }, y: countAxis({ stacked: true }) },
      },
    }),
    latency: new Chart(canvasOf("latency"), {
      type: "bar",
      data: { labels: [], datasets: [bar("p50", COLORS.p50), bar("p95", COLORS.p95)] },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: { x: { grid: { display: false } }, y: { beginAtZero: true, title: { display: true, text: "seconds" } } },
        plugins: {
          tooltip: {
            callbacks: {
              label: (item) => `${item.dataset.label}: ${item.raw === null ? "n/a" : `${number.format(item.raw)} s`}`,
              footer: (items) => (items.length ? `${latencyCounts[items[0].dataIndex] ?? 0} jobs` : ""),
            },
          },
        },
      },
    }),
    failures: new Chart(canvasOf("failures"), {
      type: "bar",
      data: { labels: [], datasets: [bar("Failed jobs", COLORS.failures)] },
      options: {
        indexAxis: "y",
        scales: { x: countAxis(), y: { grid: { display: false }, ticks: shortLabels } },
        plugins: { legend: { display: false } },
      },
    }),
    tenants: new Chart(canvasOf("tenants"), {
      type: "bar",
      data: { labels: [], datasets: [bar("Jobs", COLORS.tenants)] },
      options: {
        indexAxis: "y",
        scales: { x: countAxis(), y: { grid: { display: false }, ticks: shortLabels } },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { afterLabel: (item) => `${number.format(tenantSeconds[item.dataIndex] ?? 0)} s generated` } },
        },
      },
    }),
    cache: new Chart(canvasOf("cache"), {
      type: "doughnut",
      data: {
        labels: ["Hits", "Misses"],
        datasets: [{ data: [0, 0], backgroundColor: [COLORS.hits, COLORS.misses], hoverBackgroundColor: [COLORS.hits, COLORS.misses], borderWidth: 2 }],
      },
      options: { cutout: "62%", plugins: { legend: { position: "right" }, opsCenterText: { text: "" } } },
      plugins: [centerText],
    }),
  };
  let latencyCounts = [];
  let tenantSeconds = [];

  applyTheme();
  // The admin's theme toggle sets data-theme on <html>; the OS setting can change too.
  new MutationObserver(applyTheme).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);

  /** Replace a chart's labels and dataset values in place and redraw without animation. */
  function setChart(name, labels, series, emptyText) {
    const chart = charts[name];
    chart.data.labels = labels;
    series.forEach((values, index) => { chart.data.datasets[index].data = values; });
    chart.update(refreshed === 0 ? undefined : "none");
    const empty = !series.some((values) => values.some((value) => value));
    const card = chart.canvas.closest(".ops-card");
    card.classList.toggle("is-empty", empty);
    const note = $(".ops-empty", card);
    note.hidden = !empty;
    if (emptyText) note.textContent = emptyText;
  }

  // ------------------------------------------------------------------ tiles
  function setTile(name, value, sub) {
    const tile = $(`[data-tile="${name}"]`);
    $(".ops-tile-value", tile).textContent = value;
    if (sub !== undefined) {
      $(".ops-tile-sub", tile).textContent = sub;
    }
  }

  const sum = (values) => values.reduce((total, value) => total + value, 0);
  const MAX_POINTS = 120;

  /** Averages of consecutive groups of ``size`` values (the last group may be shorter). */
  function groupAverage(values, size) {
    if (size === 1) return values;
    const out = [];
    for (let start = 0; start < values.length; start += size) {
      const slice = values.slice(start, start + size);
      out.push(Math.round((sum(slice) / slice.length) * 100) / 100);
    }
    return out;
  }

  function render(data) {
    const throughput = data.throughput;
    const lastFive = (values) => sum(values.slice(-5)) / Math.min(5, values.length || 1);
    setTile("jobs-per-min", lastFive(throughput.submitted).toFixed(1), `${lastFive(throughput.finished).toFixed(1)} finished / min`);

    const failures = data.failures;
    setTile("failure-rate", percent(failures.rate), `${number.format(failures.failed)} of ${number.format(failures.total)} finished`);
    setTile("cache-rate", percent(data.cache.rate), `${number.format(data.cache.hits)} of ${number.format(data.cache.total)} jobs`);

    const active = { queued: 0, running: 0 };
    data.active.forEach((row) => { active[row.status] = (active[row.status] || 0) + row.count; });
    const activeTile = $('[data-tile="active"]');
    $(".ops-tile-value", activeTile).textContent = number.format(active.queued + active.running);
    $('[data-field="queued"]', activeTile).textContent = number.format(active.queued);
    $('[data-field="running"]', activeTile).textContent = number.format(active.running);

    const refreshedTile = $('[data-tile="refreshed"]');
    setTile("refreshed", clock(data.generated_at), `charts cover the last ${windowLabel(data.window_minutes)}`);
    $(".ops-tile-value", refreshedTile).title = data.generated_at;

    // Long windows: at most MAX_POINTS points, each the average per minute of its group.
    const group = Math.max(1, Math.ceil(data.minutes.length / MAX_POINTS));
    const perMinute = (values) => groupAverage(values, group);
    charts.throughput.options.scales.y.ticks.precision = group === 1 ? 0 : undefined;
    const minuteLabels = data.minutes.filter((_, index) => (index + 1) % group === 0 || index === data.minutes.length - 1);
    setChart("throughput", minuteLabels.map(minuteLabel), [perMinute(throughput.submitted), perMinute(throughput.finished), perMinute(throughput.failed)]);

    const queues = data.queues || [];
    const queuesEmpty = data.queues_error ? "Queue depths unavailable." : queues.length ? "All queues are empty." : "No queues declared.";
    const depths = ["ready", "in_progress", "delayed", "dead"].map((key) => queues.map((row) => row[key]));
    setChart("queues", queues.map((row) => row.queue), depths, queuesEmpty);
    const queuesError = $("#ops-queues-error");
    queuesError.hidden = !data.queues_error;
    queuesError.textContent = data.queues_error ? `Queue depths unavailable (${data.queues_error}): the broker could not be reached.` : "";

    const latencyLabels = [];
    const p50 = [];
    const p95 = [];
    latencyCounts = [];
    Object.entries(data.latency).forEach(([kind, spreads]) => {
      const kindLabel = KIND_LABELS[kind] || kind;
      [["queue_wait_s", "wait"], ["run_s", "run"]].forEach(([key, what]) => {
        latencyLabels.push(`${kindLabel} ${what}`);
        p50.push(spreads[key].p50);
        p95.push(spreads[key].p95);
        latencyCounts.push(spreads[key].count);
      });
    });
    setChart("latency", latencyLabels, [p50, p95]);

    setChart("failures", failures.by_code.map((row) => row.code), [failures.by_code.map((row) => row.count)]);

    tenantSeconds = data.top_tenants.map((row) => row.seconds);
    setChart("tenants", data.top_tenants.map((row) => row.tenant), [data.top_tenants.map((row) => row.jobs)]);
    renderTenantTable(data.top_tenants);

    charts.cache.options.plugins.opsCenterText.text = percent(data.cache.rate);
    setChart("cache", ["Hits", "Misses"], [[data.cache.hits, Math.max(0, data.cache.total - data.cache.hits)]]);
  }

  function renderTenantTable(rows) {
    const body = $("#ops-tenant-rows");
    const fresh = rows.map((row) => {
      const tr = document.createElement("tr");
      [[row.tenant, ""], [number.format(row.jobs), "num"], [number.format(row.seconds), "num"]].forEach(([text, className]) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (className) td.className = className;
        tr.append(td);
      });
      return tr;
    });
    if (!fresh.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 3;
      td.className = "ops-table-empty";
      td.textContent = "No jobs in this window.";
      tr.append(td);
      fresh.push(tr);
    }
    body.replaceChildren(...fresh);
  }

  function windowLabel(minutes) {
    if (minutes === 60) return "hour";
    if (minutes % 60 === 0) return `${minutes / 60} hours`;
    return `${minutes} min`;
  }

  // ---------------------------------------------------------------- polling
  function setStatus(ok, text) {
    root.classList.toggle("is-stale", !ok);
    $("#ops-status-text").textContent = text;
  }

  function showError(message) {
    const banner = $("#ops-error");
    const since = lastSuccess ? ` Showing data from ${clock(lastSuccess)}.` : "";
    banner.textContent = `Could not refresh the dashboard: ${message}.${since} Retrying every ${refreshMs / 1000} s.`;
    banner.hidden = false;
    setStatus(false, "Refresh failed · retrying");
  }

  async function load() {
    const url = new URL(baseUrl, window.location.href);
    url.searchParams.set("window", String(windowMinutes));
    const controller = new AbortController();
    inFlight = controller;
    const timeout = setTimeout(() => controller.abort(), Math.max(10_000, refreshMs * 2));
    try {
      const response = await fetch(url, {
        credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" }, signal: controller.signal,
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      if (!(response.headers.get("Content-Type") || "").includes("application/json")) {
        throw new Error("the session may have expired (reload the page to log in again)");
      }
      const data = await response.json();
      render(data);
      lastSuccess = data.generated_at;
      $("#ops-error").hidden = true;
      setStatus(true, `Live · updates every ${refreshMs / 1000} s`);
      refreshed += 1;
      root.dataset.refreshed = String(refreshed);
      if (root.dataset.ready !== "1") root.dataset.ready = "1";
    } catch (error) {
      if (controller !== inFlight) return; // superseded by a newer request
      failed += 1;
      root.dataset.failed = String(failed);
      showError(error.name === "AbortError" ? "the request timed out" : error.message === "Failed to fetch" ? "network error" : error.message);
    } finally {
      clearTimeout(timeout);
      if (controller === inFlight) inFlight = null;
    }
  }

  function schedule(delay = refreshMs) {
    clearTimeout(timer);
    timer = setTimeout(tick, delay);
  }

  async function tick() {
    if (inFlight) return; // the request in flight schedules the next one
    if (document.hidden) {
      schedule(); // nobody is looking: poll again when the tab is visible
      return;
    }
    await load();
    schedule();
  }

  $("#ops-window").addEventListener("change", (event) => {
    windowMinutes = Number(event.target.value) || 60;
    if (inFlight) inFlight.abort();
    inFlight = null;
    clearTimeout(timer);
    tick();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && !inFlight) {
      clearTimeout(timer);
      tick();
    }
  });

  tick();
})();
