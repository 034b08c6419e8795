/* Mynah playground: try the /v1 API in a browser, with the user's own key.
 *
 * - The key lives in sessionStorage only (this tab), never in localStorage,
 *   cookies or a URL, and goes out only as "Authorization: Bearer" to /v1.
 * - Live progress reads the job's Server-Sent Events with fetch() and a
 *   ReadableStream (EventSource cannot send an Authorization header), parses
 *   the frames itself and resumes with Last-Event-ID after a drop.
 * - Results are fetched with the key and played from blob: URLs (an <audio
 *   src> cannot send headers); with object storage, from the presigned URL.
 * - Everything that comes from the API (names, text, metadata, error
 *   messages) goes into the page as text: textContent, never innerHTML.
 */
(() => {
  "use strict";

  const root = document.getElementById("playground");
  if (!root) {
    return;
  }
  const API = root.dataset.api || "/v1/";
  const CATALOG = JSON.parse(document.getElementById("pg-catalog").textContent);
  const KEY_STORAGE = "mynah.playground.apiKey";
  const JOBS_POLL_MS = 4000;
  const JOBS_PAGE = 20;
  // Browsers open at most 6 HTTP/1.1 connections to a server: at most this
  // many event streams at once, so API calls never wait behind them. Other
  // live cards are kept current by the job list's polling.
  const MAX_STREAMS = 4;
  const VOICE_POLL_MS = 2000;
  const TERMINAL = new Set(["succeeded", "failed", "canceled", "expired"]);
  const ACTIVE = new Set(["queued", "running"]);
  const KIND_LABELS = { tts: "Speech", talking_head: "Talking head" };
  const EXTENSIONS = { "audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/ogg": "ogg", "audio/flac": "flac", "audio/aac": "aac", "audio/pcm": "pcm", "video/mp4": "mp4" };

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ DOM helpers
  /** Build an element; string children become text nodes (never HTML). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) {
        continue;
      }
      if (name === "className") {
        node.className = value;
      } else if (name === "dataset") {
        Object.assign(node.dataset, value);
      } else if (name === "text") {
        node.textContent = value;
      } else if (name.startsWith("on")) {
        node.addEventListener(name.slice(2), value);
      } else if (value === true) {
        node.setAttribute(name, "");
      } else {
        node.setAttribute(name, String(value));
      }
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const shortId = (id) => String(id).slice(0, 8);
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const clock = (iso) => (iso ? timeFormat.format(new Date(iso)) : "");
  const humanStage = (stage) => String(stage || "").replace(/_/g, " ");

  function seconds(value) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) {
      return "";
    }
    const number = Number(value);
    return number < 10 ? `${number.toFixed(2)} s` : `${number.toFixed(1)} s`;
  }

  function bytes(value) {
    if (!value && value !== 0) {
      return "";
    }
    if (value < 1024) {
      return `${value} B`;
    }
    if (value < 1024 * 1024) {
      return `${(value / 1024).toFixed(1)} KB`;
    }
    return `${(value / 1024 / 1024).toFixed(1)} MB`;
  }

  function elapsed(fromIso, toIso) {
    if (!fromIso || !toIso) {
      return null;
    }
    return Math.max(0, (new Date(toIso) - new Date(fromIso)) / 1000);
  }

  // --------------------------------------------------------------- API calls
  class ApiError extends Error {
    constructor({ status = 0, code, message, details = {}, requestId = "" }) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || {};
      this.requestId = requestId || "";
    }
  }

  let apiKey = "";

  async function errorFrom(response) {
    const requestId = response.headers.get("X-Request-ID") || "";
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    const error = body && body.error;
    if (error && typeof error === "object") {
      return new ApiError({
        status: response.status, code: String(error.code || `http_${response.status}`), message: String(error.message || response.statusText),
        details: error.details, requestId: error.request_id || requestId,
      });
    }
    return new ApiError({ status: response.status, code: `http_${response.status}`, message: response.statusText || "Request failed.", requestId });
  }

  function networkError(error) {
    return new ApiError({ code: "network_error", message: `Could not reach the server (${error && error.message ? error.message : "network error"}).` });
  }

  /** fetch() with the key; resolves to the Response when ok, else throws ApiError. */
  async function apiFetch(path, { method = "GET", json, form, signal, key = apiKey, headers = {} } = {}) {
    const init = { method, signal, cache: "no-store", credentials: "omit", headers: { Accept: "application/json", ...headers } };
    if (key) {
      init.headers.Authorization = `Bearer ${key}`;
    }
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = form;
    }
    let response;
    try {
      response = await fetch(path.startsWith("/") ? path : API + path, init);
    } catch (error) {
      if (error && error.name === "AbortError") {
        throw error;
      }
      throw networkError(error);
    }
    if (!response.ok) {
      throw await errorFrom(response);
    }
    return response;
  }

  async function api(path, options) {
    const response = await apiFetch(path, options);
    return response.status === 204 ? null : response.json();
  }

  // ------------------------------------------------------------ error boxes
  function showError(box, error) {
    if (!box) {
      return;
    }
    if (!(error instanceof ApiError)) {
      console.warn(error); // eslint-disable-line no-console
      error = new ApiError({ code: "client_error", message: String((error && error.message) || error) });
    }
    const rows = [];
    const fields = error.details && error.details.fields;
    if (fields && typeof fields === "object") {
      for (const [field, problems] of Object.entries(fields)) {
        const text = (Array.isArray(problems) ? problems : [problems])
          .map((problem) => (problem && typeof problem === "object" ? problem.message : problem)).join(" ");
        rows.push(el("li", {}, el("code", { text: field }), ": ", text));
      }
    }
    const meta = [];
    if (error.status) {
      meta.push(`HTTP ${error.status}`);
    }
    if (error.requestId) {
      meta.push(`request id ${error.requestId}`);
    }
    const retryAfter = error.details && error.details.retry_after_s;
    box.replaceChildren(...[
      el("p", { className: "pg-error-head" }, el("code", { className: "pg-error-code", text: error.code }), " ",
        el("span", { className: "pg-error-message", text: error.message })),
      rows.length ? el("ul", { className: "pg-error-fields" }, rows) : null,
      meta.length ? el("p", { className: "pg-error-meta", text: meta.join(" · ") + (retryAfter ? ` · retry after ${retryAfter} s` : "") }) : null,
      el("button", { type: "button", className: "pg-error-close", "aria-label": "Dismiss", text: "×", onclick: () => clearError(box) }),
    ].filter(Boolean));
    box.dataset.code = error.code;
    box.hidden = false;
  }

  function clearError(box) {
    if (box) {
      box.hidden = true;
      box.replaceChildren();
      delete box.dataset.code;
    }
  }

  // ------------------------------------------------------------- languages
  const languageNames = (() => {
    try {
      return new Intl.DisplayNames([navigator.language || "en", "en"], { type: "language" });
    } catch (_) {
      return null;
    }
  })();

  function languageLabel(code) {
    let name = "";
    try {
      name = languageNames ? languageNames.of(code) : "";
    } catch (_) {
      name = "";
    }
    return name && name.toLowerCase() !== code.toLowerCase() ? `${name} (${code})` : code;
  }

  const allLanguages = [...new Set(CATALOG.tts_engines.flatMap((engine) => engine.languages))]
    .map((code) => ({ code, label: languageLabel(code) }))
    .sort((a, b) => a.label.localeCompare(b.label));

  function fillLanguages(select) {
    const common = ["en", "en-us", "en-gb", "de", "fr", "es", "it", "cmn", "yue", "ja"]
      .filter((code) => allLanguages.some((language) => language.code === code));
    const option = ({ code, label }) => el("option", { value: code, text: label });
    const groups = [];
    if (common.length) {
      groups.push(el("optgroup", { label: "Common" }, common.map((code) => option({ code, label: languageLabel(code) }))));
    }
    groups.push(el("optgroup", { label: "All languages" }, allLanguages.map(option)));
    select.replaceChildren(...groups);
    select.value = allLanguages.some((language) => language.code === "en") ? "en" : (allLanguages[0] || {}).code || "";
  }

  function defaultTtsEngine(language) {
    const rule = CATALOG.default_tts_engine;
    return rule.neural_languages.includes(language.toLowerCase()) ? rule.neural : rule.other;
  }

  const ttsEngine = (name) => CATALOG.tts_engines.find((engine) => engine.name === name);
  const videoEngine = (name) => CATALOG.video_engines.find((engine) => engine.name === name);

  // ------------------------------------------------------------------- tabs
  const tabs = [...root.querySelectorAll('[role="tab"]')];

  function selectTab(tab, focus = false) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) {
      tab.focus();
    }
  }

  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) {
        event.preventDefault();
        selectTab(tabs[(index + step + tabs.length) % tabs.length], true);
      }
    });
  });

  // -------------------------------------------------------------------- key
  const keyInput = $("pg-key");
  const keyStatus = $("pg-key-status");
  const keyError = $("pg-key-error");
  const fieldsets = [...root.querySelectorAll(".pg-fieldset")];
  let keyCheck = 0; // the newest validation wins

  function readStoredKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (_) {
      return "";
    }
  }

  function storeKey(key) {
    try {
      if (key) {
        window.sessionStorage.setItem(KEY_STORAGE, key);
      } else {
        window.sessionStorage.removeItem(KEY_STORAGE);
      }
    } catch (_) {
      // storage disabled: the key lives in this page only
    }
  }

  function usageText(usage) {
    const active = usage.active_jobs;
    const generated = usage.generated_seconds ? usage.generated_seconds.total : 0;
    const quota = usage.quota_remaining_seconds;
    const parts = [`${active} active job${active === 1 ? "" : "s"}`, `${seconds(generated)} generated in ${usage.period}`];
    if (quota !== null && quota !== undefined) {
      parts.push(`${seconds(quota)} of quota left`);
    }
    return parts.join(" · ");
  }

  async function useKey(key, { fromStorage = false } = {}) {
    key = key.trim();
    clearError(keyError);
    if (!key) {
      showError(keyError, new ApiError({ code: "missing_api_key", message: "Paste an API key first." }));
      return;
    }
    const check = ++keyCheck;
    keyStatus.textContent = "Checking the key…";
    root.dataset.keyState = "checking";
    try {
      const usage = await api("usage", { key });
      if (check !== keyCheck) {
        return;
      }
      connect(key, usage);
    } catch (error) {
      if (check !== keyCheck) {
        return;
      }
      root.dataset.keyState = "rejected";
      if (error.status === 401 || error.status === 403) {
        disconnect({ keepError: true }); // a rejected key is never kept, nor the one it replaced
        root.dataset.keyState = "rejected";
        keyStatus.textContent = "This key was not accepted.";
      } else {
        keyStatus.textContent = "Could not check the key; press “Use key” to try again.";
      }
      showError(keyError, error);
    }
  }

  function connect(key, usage) {
    const changed = key !== apiKey;
    apiKey = key;
    storeKey(key);
    keyInput.value = key;
    keyStatus.textContent = `Key accepted: ${usageText(usage)}.`;
    root.dataset.keyState = "accepted";
    root.dataset.connected = "1";
    $("pg-key-forget").hidden = false;
    fieldsets.forEach((fieldset) => { fieldset.disabled = false; });
    if (changed) {
      resetData();
    }
    refreshVoices();
    refreshJobs({ reset: true });
    scheduleJobsPoll();
  }

  function disconnect({ keepError = false } = {}) {
    keyCheck++;
    apiKey = "";
    storeKey("");
    root.dataset.connected = "0";
    root.dataset.keyState = "none";
    $("pg-key-forget").hidden = true;
    fieldsets.forEach((fieldset) => { fieldset.disabled = true; });
    clearTimeout(jobsTimer);
    clearTimeout(voicePoll);
    resetData();
    keyStatus.textContent = "No key yet.";
    if (!keepError) {
      clearError(keyError);
    }
  }

  function resetData() {
    for (const controller of streams.values()) {
      controller.abort();
    }
    streams.clear();
    for (const card of cards.values()) {
      card.remove();
    }
    cards.clear();
    for (const result of results.values()) {
      if (result.objectUrl) {
        URL.revokeObjectURL(result.objectUrl);
      }
    }
    results.clear();
    jobs.clear();
    jobRows.clear();
    jobOrder = [];
    nextCursor = null;
    voices = [];
    renderVoices();
    renderJobs();
    updateResultsEmpty();
    [$("pg-tts-error"), $("pg-th-error"), $("pg-voice-error"), $("pg-jobs-error")].forEach(clearError);
    $("pg-jobs-status-line").textContent = "";
    $("pg-voice-status").textContent = "";
  }

  $("pg-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    useKey(keyInput.value);
  });
  keyInput.addEventListener("paste", () => {
    // The pasted text is in the field after this event.
    setTimeout(() => {
      if (keyInput.value.trim()) {
        useKey(keyInput.value);
      }
    }, 0);
  });
  $("pg-key-toggle").addEventListener("click", (event) => {
    const show = keyInput.type === "password";
    keyInput.type = show ? "text" : "password";
    event.currentTarget.textContent = show ? "Hide" : "Show";
    event.currentTarget.setAttribute("aria-pressed", String(show));
  });
  $("pg-key-forget").addEventListener("click", () => {
    keyInput.value = "";
    disconnect();
    keyStatus.textContent = "Key forgotten.";
    keyInput.focus();
  });

  // ----------------------------------------------------------------- voices
  let voices = [];
  let voicePoll = null;

  async function refreshVoices() {
    if (!apiKey) {
      return;
    }
    try {
      const page = await api("voices?limit=100");
      voices = page.results || [];
      renderVoices();
      const pending = voices.some((voice) => voice.status === "processing");
      clearTimeout(voicePoll);
      if (pending) {
        voicePoll = setTimeout(refreshVoices, VOICE_POLL_MS);
      }
    } catch (error) {
      showError($("pg-voice-error"), error);
    }
  }

  function voiceStatusText(voice) {
    if (voice.status === "ready") {
      const quality = voice.quality && voice.quality.score !== null && voice.quality.score !== undefined
        ? `quality ${Math.round(voice.quality.score * 100)} %` : "";
      return ["ready", seconds(voice.speech_s) && `${seconds(voice.speech_s)} of speech`, quality].filter(Boolean).join(" · ");
    }
    if (voice.status === "failed" && voice.error) {
      return `failed: ${voice.error.code}`;
    }
    return voice.status === "processing" ? "analysing…" : voice.status;
  }

  function renderVoices() {
    const list = $("pg-voice-list");
    list.replaceChildren(...voices.map((voice) => {
      const warnings = (voice.quality && voice.quality.warnings) || [];
      const remove = el("button", { type: "button", className: "pg-button pg-small pg-quiet", text: "Delete" });
      remove.addEventListener("click", () => deleteVoice(voice, remove));
      return el("li", { className: "pg-voice", dataset: { voiceId: voice.id, status: voice.status } },
        el("div", { className: "pg-voice-main" },
          el("span", { className: "pg-voice-name", text: voice.name }),
          el("span", { className: "pg-muted", text: languageLabel(voice.language) })),
        el("div", { className: "pg-voice-meta" },
          el("span", { className: `pg-badge pg-status-${voice.status}`, text: voiceStatusText(voice) }),
          warnings.length ? el("span", { className: "pg-warning", text: `warnings: ${warnings.join(", ")}` }) : null,
          voice.error ? el("span", { className: "pg-muted", text: voice.error.message }) : null),
        el("div", { className: "pg-row-actions" }, remove));
    }));
    $("pg-voice-empty").hidden = voices.length > 0;
    fillVoiceSelects();
  }

  function fillVoiceSelects() {
    const ready = voices.filter((voice) => voice.status === "ready");
    for (const select of root.querySelectorAll("[data-voices]")) {
      const current = select.value;
      select.replaceChildren(
        el("option", { value: "", text: "None: the engine's own voice" }),
        ...ready.map((voice) => el("option", { value: voice.id, text: `${voice.name} (${voice.language})` })),
      );
      if (ready.some((voice) => voice.id === current)) {
        select.value = current;
      }
    }
    updateTtsOptions();
  }

  async function deleteVoice(voice, button) {
    if (button.dataset.confirm !== "1") {
      button.dataset.confirm = "1";
      button.textContent = "Delete for good?";
      setTimeout(() => {
        if (button.isConnected) {
          button.dataset.confirm = "";
          button.textContent = "Delete";
        }
      }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await api(`voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
      clearError($("pg-voice-error"));
    } catch (error) {
      showError($("pg-voice-error"), error);
    }
    refreshVoices();
  }

  $("pg-voice-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = $("pg-voice-error");
    const status = $("pg-voice-status");
    clearError(box);
    const file = $("pg-voice-file").files[0];
    const name = $("pg-voice-name").value.trim();
    if (!name || !file) {
      showError(box, new ApiError({ code: "validation_error", message: "A name and an audio clip are needed." }));
      return;
    }
    if (file.size > CATALOG.max_voice_bytes) {
      showError(box, new ApiError({ code: "file_too_large", message: `The clip is ${bytes(file.size)}; the limit is ${bytes(CATALOG.max_voice_bytes)}.` }));
      return;
    }
    const form = new FormData();
    form.append("name", name);
    form.append("audio", file, file.name || "voice");
    form.append("language", $("pg-voice-language").value);
    const transcript = $("pg-voice-transcript").value.trim();
    if (transcript) {
      form.append("transcript", transcript);
    }
    const submit = $("pg-voice-submit");
    submit.disabled = true;
    status.textContent = "Uploading and analysing the clip (up to 20 s)…";
    try {
      const voice = await api("voices", { method: "POST", form });
      status.textContent = voice.status === "ready"
        ? `Voice “${voice.name}” is ready.` : `Voice “${voice.name}” is ${voice.status}; its analysis continues.`;
      event.target.reset();
      fillLanguages($("pg-voice-language"));
    } catch (error) {
      status.textContent = "The voice was not added.";
      showError(box, error);
    } finally {
      submit.disabled = false;
    }
    refreshVoices();
  });

  // ----------------------------------------------------------------- speech
  const ttsLanguage = $("pg-tts-language");
  const ttsEngineSelect = $("pg-tts-engine");

  function fillTtsEngines() {
    const language = ttsLanguage.value;
    const current = ttsEngineSelect.value;
    const automatic = defaultTtsEngine(language);
    ttsEngineSelect.replaceChildren(
      el("option", { value: "", text: `Automatic (${automatic})` }),
      ...CATALOG.tts_engines.map((engine) => el("option", {
        value: engine.name, disabled: !engine.languages.includes(language.toLowerCase()),
        text: engine.name + (engine.languages.includes(language.toLowerCase()) ? "" : " (not this language)"),
      })),
    );
    const engine = ttsEngine(current);
    ttsEngineSelect.value = engine && engine.languages.includes(language.toLowerCase()) ? current : "";
    updateTtsOptions();
  }

  function updateTtsOptions() {
    const name = ttsEngineSelect.value || defaultTtsEngine(ttsLanguage.value || "en");
    const engine = ttsEngine(name);
    const options = engine ? engine.options : [];
    const speed = $("pg-tts-speed");
    speed.disabled = !options.includes("speed");
    if (speed.disabled) {
      speed.value = "1";
      $("pg-tts-speed-value").textContent = "1.00×";
    }
    $("pg-tts-instruct-field").hidden = !options.includes("instruct");
    const voice = $("pg-tts-voice");
    voice.disabled = !options.includes("voice");
    const hint = $("pg-tts-voice-hint");
    const readyVoices = voice.options.length - 1;
    if (!engine) {
      hint.textContent = "";
    } else if (!options.includes("voice")) {
      hint.textContent = `${name} does not speak in uploaded voices.`;
    } else if (engine.requires_voice) {
      hint.textContent = `${name} speaks only in an uploaded voice (cloning).`;
    } else if (!readyVoices) {
      hint.textContent = "Upload a voice under Voices to speak in it.";
    } else if (voice.value) {
      hint.textContent = engine.clones_voice ? "The engine clones the voice." : "Voice matching: pitch and timbre move toward the voice.";
    } else {
      hint.textContent = "";
    }
  }

  function updateCounter() {
    const length = $("pg-tts-text").value.length;
    $("pg-tts-count").textContent = `${length} / ${CATALOG.max_text_chars} characters`;
  }

  ttsLanguage.addEventListener("change", fillTtsEngines);
  ttsEngineSelect.addEventListener("change", updateTtsOptions);
  $("pg-tts-voice").addEventListener("change", updateTtsOptions);
  $("pg-tts-text").addEventListener("input", updateCounter);
  $("pg-tts-speed").addEventListener("input", (event) => {
    $("pg-tts-speed-value").textContent = `${Number(event.target.value).toFixed(2)}×`;
  });

  function metadataFrom(labelInput) {
    const label = labelInput.value.trim();
    return label ? { label } : {};
  }

  /** The speech request the form describes. */
  function ttsBody() {
    const body = {
      text: $("pg-tts-text").value,
      language: ttsLanguage.value,
      format: $("pg-tts-format").value,
      metadata: metadataFrom($("pg-tts-label")),
    };
    if (ttsEngineSelect.value) {
      body.engine = ttsEngineSelect.value;
    }
    const speed = $("pg-tts-speed");
    if (!speed.disabled && Number(speed.value) !== 1) {
      body.speed = Number(speed.value);
    }
    const voice = $("pg-tts-voice");
    if (!voice.disabled && voice.value) {
      body.voice_id = voice.value;
    }
    const instruct = $("pg-tts-instruct");
    if (!$("pg-tts-instruct-field").hidden && instruct.value.trim()) {
      body.instruct = instruct.value.trim();
    }
    if (!$("pg-tts-cache").checked) {
      body.cache = false;
    }
    return body;
  }

  $("pg-tts-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = $("pg-tts-error");
    clearError(box);
    const body = ttsBody();
    await submitJob(event.submitter || $("pg-tts-submit"), box, () => api("tts", { method: "POST", json: body }));
  });

  // ------------------------------------------------------------- speak now
  /* "Speak now": the same request as MP3 with "stream": true, played while
   * it is made. The card's <audio> plays a MediaSource fed with the chunks of
   * GET /v1/jobs/{id}/audio-stream (fetched with the key: an <audio src>
   * cannot send it). Without MediaSource MP3 support, the stream is read to
   * its end and played from a blob: URL. */
  const STREAM_TYPE = "audio/mpeg";
  const canStreamMp3 = () => "MediaSource" in window && MediaSource.isTypeSupported(STREAM_TYPE);

  $("pg-tts-speak").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    const box = $("pg-tts-error");
    clearError(box);
    const body = { ...ttsBody(), format: "mp3", stream: true };
    button.disabled = true;
    try {
      const job = await api("tts", { method: "POST", json: body });
      upsertJob(job);
      const card = openCard(job, { submittedAt: performance.now() });
      card.dataset.loaded = "streaming"; // the stream plays it: the stored copy is not fetched again
      card.scrollIntoView({ block: "nearest", behavior: "smooth" });
      refreshJobs();
      playStream(card, job).catch((error) => {
        card.dataset.stream = "failed";
        const message = error instanceof ApiError ? error : new ApiError({
          code: "stream_interrupted", message: "The audio stream stopped before its end; the job's status says why.",
        });
        showError(card.querySelector(".pg-error"), message);
      });
    } catch (error) {
      showError(box, error);
    } finally {
      button.disabled = false;
    }
  });

  /** Waits until a SourceBuffer has taken the last append. */
  const appended = (buffer) => new Promise((resolve, reject) => {
    buffer.addEventListener("updateend", resolve, { once: true });
    buffer.addEventListener("error", () => reject(new Error("The browser could not decode the stream.")), { once: true });
  });

  async function playStream(card, job) {
    const player = card.querySelector(".pg-player");
    const media = el("audio", { controls: true, className: "pg-stream-audio" });
    player.replaceChildren(media);
    card.dataset.stream = "opening";
    const response = await apiFetch(`jobs/${encodeURIComponent(job.id)}/audio-stream`, { headers: { Accept: "audio/mpeg, */*" } });
    const reader = response.body.getReader();
    const parts = [];
    let buffer = null;
    let source = null;
    card.dataset.streamMode = canStreamMp3() ? "mediasource" : "blob";
    if (canStreamMp3()) {
      source = new MediaSource();
      media.src = URL.createObjectURL(source);
      await new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
      buffer = source.addSourceBuffer(STREAM_TYPE);
    }
    card.dataset.stream = "playing";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      parts.push(value);
      card.dataset.streamBytes = String(Number(card.dataset.streamBytes || 0) + value.byteLength);
      if (buffer) {
        const taken = appended(buffer);
        buffer.appendBuffer(value);
        await taken;
        if (parts.length === 1) {
          media.play().catch(() => {}); // the click allowed it; a browser that refuses leaves the controls
        }
      }
    }
    const blob = new Blob(parts, { type: STREAM_TYPE });
    const objectUrl = URL.createObjectURL(blob);
    if (source) {
      source.endOfStream();
    } else {
      media.src = objectUrl;
      media.play().catch(() => {});
    }
    results.set(job.id, { blob, contentType: STREAM_TYPE, objectUrl, filename: filenameFor(job, STREAM_TYPE), remote: false });
    const download = card.querySelector(".pg-download");
    download.href = objectUrl;
    download.setAttribute("download", filenameFor(job, STREAM_TYPE));
    download.hidden = false;
    card.dataset.stream = "done";
  }

  // ---------------------------------------------------------- talking head
  const thEngineSelect = $("pg-th-engine");
  const TH_DEFAULTS = CATALOG.talking_head_defaults;

  function fillVideoEngines() {
    thEngineSelect.replaceChildren(...CATALOG.video_engines.map((engine) => el("option", { value: engine.name, text: engine.name })));
    if (videoEngine(CATALOG.default_video_engine)) {
      thEngineSelect.value = CATALOG.default_video_engine;
    }
    for (const input of root.querySelectorAll("#pg-th-form [data-option]")) {
      const value = TH_DEFAULTS[input.dataset.option];
      if (input.type === "checkbox") {
        input.checked = Boolean(value);
      } else {
        input.value = String(value);
      }
    }
    $("pg-th-fps").value = String(TH_DEFAULTS.fps);
    updateVideoOptions();
  }

  function updateVideoOptions() {
    const engine = videoEngine(thEngineSelect.value);
    const resolution = $("pg-th-resolution");
    const current = Number(resolution.value) || TH_DEFAULTS.resolution;
    const resolutions = engine ? engine.resolutions : [TH_DEFAULTS.resolution];
    resolution.replaceChildren(...resolutions.map((size) => el("option", { value: size, text: `${size} × ${size}` })));
    resolution.value = String(resolutions.includes(current) ? current : resolutions[0]);
    const fps = $("pg-th-fps");
    if (engine && engine.frame_rates) {
      fps.value = String(engine.frame_rates[0]);
      fps.disabled = engine.frame_rates.length === 1;
    } else {
      fps.disabled = false;
    }
    const unsupported = [];
    for (const input of root.querySelectorAll("#pg-th-form [data-option]")) {
      const option = input.dataset.option;
      const honoured = option === "expand_ratio" || (engine && engine.options.includes(option));
      input.disabled = !honoured;
      if (!honoured) {
        unsupported.push(option.replace(/_/g, " "));
        if (input.type === "checkbox") {
          input.checked = Boolean(TH_DEFAULTS[option]);
        } else {
          input.value = String(TH_DEFAULTS[option]);
        }
      }
    }
    $("pg-th-options-hint").textContent = unsupported.length && engine ? `${engine.name} does not use: ${unsupported.join(", ")}.` : "";
  }

  function updateSource() {
    const fromText = $("pg-th-source-text").checked;
    $("pg-th-text-fields").hidden = !fromText;
    $("pg-th-audio-field").hidden = fromText;
  }

  thEngineSelect.addEventListener("change", updateVideoOptions);
  $("pg-th-source-text").addEventListener("change", updateSource);
  $("pg-th-source-audio").addEventListener("change", updateSource);

  let previewUrl = "";
  $("pg-th-image").addEventListener("change", (event) => {
    const preview = $("pg-th-preview");
    if (previewUrl) {
      URL.revokeObjectURL(previewUrl);
      previewUrl = "";
    }
    const file = event.target.files[0];
    if (file && file.type.startsWith("image/")) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.hidden = false;
    } else {
      preview.removeAttribute("src");
      preview.hidden = true;
    }
  });

  $("pg-th-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = $("pg-th-error");
    clearError(box);
    const image = $("pg-th-image").files[0];
    if (!image) {
      showError(box, new ApiError({ code: "validation_error", message: "Choose a portrait first." }));
      return;
    }
    if (image.size > CATALOG.max_image_bytes) {
      showError(box, new ApiError({ code: "file_too_large", message: `The portrait is ${bytes(image.size)}; the limit is ${bytes(CATALOG.max_image_bytes)}.` }));
      return;
    }
    const form = new FormData();
    form.append("image", image, image.name || "portrait");
    if ($("pg-th-source-text").checked) {
      form.append("text", $("pg-th-text").value);
      form.append("language", $("pg-th-language").value);
      if ($("pg-th-voice").value) {
        form.append("voice_id", $("pg-th-voice").value);
      }
    } else {
      const audio = $("pg-th-audio").files[0];
      if (!audio) {
        showError(box, new ApiError({ code: "validation_error", message: "Choose an audio file, or type text instead." }));
        return;
      }
      if (audio.size > CATALOG.max_audio_bytes) {
        showError(box, new ApiError({ code: "file_too_large", message: `The audio is ${bytes(audio.size)}; the limit is ${bytes(CATALOG.max_audio_bytes)}.` }));
        return;
      }
      form.append("audio", audio, audio.name || "speech");
    }
    form.append("engine", thEngineSelect.value);
    form.append("resolution", $("pg-th-resolution").value);
    if (!$("pg-th-fps").disabled && Number($("pg-th-fps").value) !== TH_DEFAULTS.fps) {
      form.append("fps", $("pg-th-fps").value);
    }
    // Only values that differ from the defaults: an engine refuses a
    // non-default value of an option it lacks (and says so).
    for (const input of root.querySelectorAll("#pg-th-form [data-option]")) {
      const option = input.dataset.option;
      if (input.disabled) {
        continue;
      }
      if (input.type === "checkbox") {
        if (input.checked !== Boolean(TH_DEFAULTS[option])) {
          form.append(option, input.checked ? "true" : "false");
        }
      } else if (input.value !== "" && Number(input.value) !== Number(TH_DEFAULTS[option])) {
        form.append(option, input.value);
      }
    }
    const metadata = metadataFrom($("pg-th-label"));
    if (Object.keys(metadata).length) {
      form.append("metadata", JSON.stringify(metadata));
    }
    if (!$("pg-th-cache").checked) {
      form.append("cache", "false");
    }
    await submitJob(event.submitter || $("pg-th-submit"), box, () => api("talking-head", { method: "POST", form }));
  });

  async function submitJob(button, box, send) {
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "Submitting…";
    try {
      const job = await send();
      upsertJob(job);
      const card = openCard(job, { submittedAt: performance.now() });
      card.scrollIntoView({ block: "nearest", behavior: "smooth" });
      refreshJobs();
    } catch (error) {
      showError(box, error);
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  // ---------------------------------------------------------- result cards
  const cards = new Map(); // job id -> <li>
  const streams = new Map(); // job id -> AbortController
  const results = new Map(); // job id -> {objectUrl, blob, filename, contentType, remote}

  function updateResultsEmpty() {
    $("pg-results-empty").hidden = cards.size > 0;
  }

  function openCard(job, { submittedAt } = {}) {
    let card = cards.get(job.id);
    if (!card) {
      card = el("li", { className: "pg-result", dataset: { jobId: job.id, status: job.status, progress: "0" } },
        el("div", { className: "pg-result-head" },
          el("span", { className: "pg-result-kind" }),
          el("code", { className: "pg-result-id", title: job.id, text: shortId(job.id) }),
          el("span", { className: "pg-badge pg-result-status" }),
          el("button", { type: "button", className: "pg-result-close", "aria-label": "Close", title: "Close", text: "×" })),
        el("p", { className: "pg-result-label" }),
        el("div", { className: "pg-progress-wrap" },
          el("progress", { className: "pg-progress", max: "100", value: "0", "aria-label": "Progress" }),
          el("span", { className: "pg-percent", text: "0 %" })),
        el("p", { className: "pg-stage", "aria-live": "polite" }),
        el("div", { className: "pg-player" }),
        el("dl", { className: "pg-facts" }),
        el("div", { className: "pg-error", role: "alert", hidden: true }),
        el("div", { className: "pg-result-actions" },
          el("button", { type: "button", className: "pg-button pg-small pg-cancel", text: "Cancel", hidden: true }),
          el("a", { className: "pg-button pg-small pg-download", text: "Download", hidden: true })));
      if (submittedAt) {
        card.dataset.submittedAt = String(submittedAt);
      }
      card.querySelector(".pg-result-close").addEventListener("click", () => closeCard(job.id));
      card.querySelector(".pg-cancel").addEventListener("click", (event) => cancelJob(job.id, event.currentTarget, card.querySelector(".pg-error")));
      cards.set(job.id, card);
      $("pg-results-list").prepend(card);
      updateResultsEmpty();
    }
    updateCard(job);
    if (!TERMINAL.has(job.status)) {
      follow(job.id);
    }
    return card;
  }

  function closeCard(jobId) {
    const controller = streams.get(jobId);
    if (controller) {
      controller.abort();
      streams.delete(jobId);
    }
    const card = cards.get(jobId);
    if (card) {
      card.querySelectorAll("audio, video").forEach((media) => media.pause());
      card.remove();
      cards.delete(jobId);
    }
    updateResultsEmpty();
    followNext();
  }

  function updateCard(update) {
    const card = cards.get(update.id);
    if (!card) {
      return;
    }
    const job = { ...(card.job || {}), ...update };
    card.job = job;
    const status = job.status;
    card.dataset.status = status;
    card.querySelector(".pg-result-kind").textContent = KIND_LABELS[job.kind] || job.kind || "Job";
    const badge = card.querySelector(".pg-result-status");
    badge.textContent = status;
    badge.className = `pg-badge pg-result-status pg-status-${status}`;
    const label = job.metadata && job.metadata.label;
    const text = job.input && job.input.text;
    card.querySelector(".pg-result-label").textContent = [label, text && `“${text.length > 140 ? text.slice(0, 139) + "…" : text}”`].filter(Boolean).join(" · ");
    const progress = status === "succeeded" ? 100 : Math.max(0, Math.min(100, Number(job.progress) || 0));
    card.querySelector(".pg-progress").value = progress;
    card.querySelector(".pg-percent").textContent = `${progress} %`;
    card.dataset.progress = String(progress);
    let stage = humanStage(job.stage);
    if (status === "queued") {
      stage = stage && stage !== "queued" ? `waiting to start (${stage})` : "waiting to start";
    } else if (status === "succeeded") {
      const took = job.cache_hit ? null : elapsed(job.created_at, job.finished_at);
      stage = job.cache_hit ? "done: an identical earlier result was reused" : `done${took !== null ? ` in ${seconds(took)}` : ""}`;
    } else if (status === "canceled") {
      stage = "canceled";
    }
    if (card.dataset.connection && !TERMINAL.has(status)) {
      stage += ` · ${card.dataset.connection}`;
    }
    card.querySelector(".pg-stage").textContent = stage;
    card.querySelector(".pg-cancel").hidden = !ACTIVE.has(status);
    if (status === "failed" && job.error) {
      showError(card.querySelector(".pg-error"), new ApiError({ code: job.error.code, message: job.error.message }));
    }
    if (status === "succeeded" && job.result && !card.dataset.loaded) {
      card.dataset.loaded = "loading";
      showResult(card, job);
    }
    upsertJob(update);
  }

  function filenameFor(job, contentType) {
    const type = String(contentType || "").split(";")[0].trim();
    const extension = EXTENSIONS[type] || (type.startsWith("video/") ? "mp4" : "bin");
    return `mynah-${job.kind === "talking_head" ? "video" : "speech"}-${shortId(job.id)}.${extension}`;
  }

  function isLocalResult(job) {
    try {
      const url = new URL(job.result.url, window.location.href);
      return url.pathname.endsWith(`/jobs/${job.id}/result`);
    } catch (_) {
      return false;
    }
  }

  /** The result as a blob: URL (local storage, fetched with the key), or the presigned URL. */
  async function loadResult(job) {
    const cached = results.get(job.id);
    if (cached) {
      return cached;
    }
    let entry;
    if (isLocalResult(job)) {
      const response = await apiFetch(`jobs/${encodeURIComponent(job.id)}/result`, { headers: { Accept: "*/*" } });
      const blob = await response.blob();
      const contentType = response.headers.get("Content-Type") || job.result.content_type;
      entry = { blob, contentType, objectUrl: URL.createObjectURL(blob), filename: filenameFor(job, contentType), remote: false };
    } else {
      entry = { contentType: job.result.content_type, objectUrl: "", url: job.result.url, filename: filenameFor(job, job.result.content_type), remote: true };
    }
    results.set(job.id, entry);
    return entry;
  }

  async function showResult(card, job) {
    const player = card.querySelector(".pg-player");
    player.replaceChildren(el("p", { className: "pg-muted", text: "Loading the result…" }));
    try {
      const result = await loadResult(job);
      const src = result.remote ? result.url : result.objectUrl;
      const isVideo = String(result.contentType || job.result.content_type).startsWith("video/");
      const media = el(isVideo ? "video" : "audio", { controls: true, preload: "metadata", playsinline: isVideo, src });
      media.addEventListener("loadedmetadata", () => { card.dataset.mediaDuration = String(media.duration); });
      media.addEventListener("error", () => {
        showError(card.querySelector(".pg-error"), new ApiError({ code: "media_error", message: "The browser could not play this file; download it instead." }));
      });
      player.replaceChildren(media);
      const download = card.querySelector(".pg-download");
      download.href = src;
      if (result.remote) {
        download.target = "_blank";
        download.rel = "noopener";
      } else {
        download.setAttribute("download", result.filename);
      }
      download.hidden = false;
      card.dataset.loaded = "1";
    } catch (error) {
      player.replaceChildren();
      delete card.dataset.loaded;
      showError(card.querySelector(".pg-error"), error);
    }
    renderFacts(card, job);
  }

  function renderFacts(card, job) {
    const result = job.result || {};
    const facts = [
      ["Duration", seconds(result.duration_s)],
      ["Size", bytes(result.size_bytes)],
      ["Type", result.content_type],
      ["Engine", job.engine],
      result.width ? ["Video", `${result.width} × ${result.height}, ${result.fps} fps, ${result.frames} frames`] : null,
      result.speaker_similarity !== undefined && result.speaker_similarity !== null
        ? ["Speaker similarity", Number(result.speaker_similarity).toFixed(2)] : null,
      result.warnings && result.warnings.length ? ["Warnings", result.warnings.join(", ")] : null,
      job.cache_hit ? ["Cache", "reused an identical earlier result"] : null,
      result.expires_at ? ["Kept until", dateTimeFormat.format(new Date(result.expires_at))] : null,
    ].filter((fact) => fact && fact[1]);
    card.querySelector(".pg-facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]));
  }

  // --------------------------------------------------------- live progress
  /** Parse a text/event-stream incrementally; calls onEvent({id, event, data}). */
  function sseParser(onEvent, onRetry) {
    let buffer = "";
    let data = [];
    let eventName = "";
    let eventId = null;
    function line(text) {
      if (text === "") {
        if (data.length) {
          onEvent({ id: eventId, event: eventName || "message", data: data.join("\n") });
        }
        data = [];
        eventName = "";
        eventId = null;
        return;
      }
      if (text.startsWith(":")) {
        return; // comment (keepalive)
      }
      const colon = text.indexOf(":");
      const field = colon === -1 ? text : text.slice(0, colon);
      let value = colon === -1 ? "" : text.slice(colon + 1);
      if (value.startsWith(" ")) {
        value = value.slice(1);
      }
      if (field === "data") {
        data.push(value);
      } else if (field === "event") {
        eventName = value;
      } else if (field === "id" && !value.includes("\0")) {
        eventId = value;
      } else if (field === "retry" && /^\d+$/.test(value)) {
        onRetry(Number(value));
      }
    }
    return (chunk) => {
      buffer += chunk;
      // A trailing "\r" may be the first half of "\r\n": keep it for the next chunk.
      const end = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
      buffer = lines.pop() + buffer.slice(end);
      lines.forEach(line);
    };
  }

  async function follow(jobId) {
    if (streams.has(jobId)) {
      return;
    }
    if (streams.size >= MAX_STREAMS) {
      const card = cards.get(jobId);
      if (card) {
        card.dataset.connection = `updated every ${JOBS_POLL_MS / 1000} s`;
      }
      return;
    }
    const controller = new AbortController();
    streams.set(jobId, controller);
    let lastEventId = "";
    let retryMs = 2000;
    let failures = 0;
    const setConnection = (text) => {
      const card = cards.get(jobId);
      if (card) {
        if (text) {
          card.dataset.connection = text;
        } else {
          delete card.dataset.connection;
        }
        if (card.job) {
          updateCard(card.job);
        }
      }
    };
    try {
      while (!controller.signal.aborted) {
        let finished = false;
        try {
          const headers = { Accept: "text/event-stream" };
          if (lastEventId) {
            headers["Last-Event-ID"] = lastEventId;
          }
          const response = await apiFetch(`jobs/${encodeURIComponent(jobId)}/events`, { signal: controller.signal, headers });
          setConnection("");
          failures = 0;
          const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
          const feed = sseParser((message) => {
            if (message.id) {
              lastEventId = message.id;
            }
            let data = null;
            try {
              data = JSON.parse(message.data);
            } catch (_) {
              return;
            }
            if (message.event === "done") {
              finished = true;
            }
            if (data && data.id) {
              updateCard(data);
            }
          }, (ms) => { retryMs = ms; });
          for (;;) {
            const { value, done } = await reader.read();
            if (done) {
              break;
            }
            feed(value);
            if (finished) {
              reader.cancel().catch(() => {});
              break;
            }
          }
        } catch (error) {
          if (controller.signal.aborted || (error && error.name === "AbortError")) {
            return;
          }
          if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429 && error.status !== 408) {
            const card = cards.get(jobId);
            if (card) {
              showError(card.querySelector(".pg-error"), error);
            }
            return; // not found, key revoked…: retrying will not help
          }
          failures += 1;
        }
        if (finished) {
          return;
        }
        // The stream ended (server restart, proxy timeout) or failed: resume after the last frame.
        const wait = Math.min(30000, retryMs * 2 ** Math.max(0, failures - 1));
        setConnection(failures ? `connection lost, retrying in ${Math.round(wait / 1000)} s` : "reconnecting");
        await sleep(wait);
      }
    } finally {
      if (streams.get(jobId) === controller) {
        streams.delete(jobId);
        followNext();
      }
    }
  }

  /** A stream closed: follow a live card that had to do without one. */
  function followNext() {
    for (const [jobId, card] of cards) {
      if (!streams.has(jobId) && card.job && !TERMINAL.has(card.job.status) && streams.size < MAX_STREAMS) {
        follow(jobId);
      }
    }
  }

  /** Live cards without a stream that the job list's first page does not cover. */
  function pollCards(listed) {
    for (const [jobId, card] of cards) {
      if (!streams.has(jobId) && !listed.includes(jobId) && card.job && !TERMINAL.has(card.job.status)) {
        api(`jobs/${encodeURIComponent(jobId)}`).then(updateCard, () => {});
      }
    }
  }

  // ------------------------------------------------------------------ jobs
  const jobs = new Map(); // id -> job (as last seen)
  let jobOrder = []; // ids, newest first
  let nextCursor = null;
  let jobsTimer = null;
  let jobsInFlight = null;

  function jobFilters() {
    const params = new URLSearchParams({ limit: String(JOBS_PAGE) });
    if ($("pg-jobs-status").value) {
      params.set("status", $("pg-jobs-status").value);
    }
    if ($("pg-jobs-kind").value) {
      params.set("kind", $("pg-jobs-kind").value);
    }
    return params;
  }

  function matchesFilters(job) {
    const status = $("pg-jobs-status").value;
    const kind = $("pg-jobs-kind").value;
    return (!status || job.status === status) && (!kind || job.kind === kind);
  }

  function upsertJob(update) {
    if (!update || !update.id) {
      return;
    }
    const known = jobs.get(update.id);
    if (!known && !update.kind) {
      return; // a progress frame for a job the list has not loaded
    }
    const job = { ...(known || {}), ...update };
    jobs.set(job.id, job);
    if (!jobOrder.includes(job.id) && matchesFilters(job)) {
      jobOrder.unshift(job.id);
      jobOrder.sort((a, b) => String(jobs.get(b).created_at).localeCompare(String(jobs.get(a).created_at)));
      renderJobs();
    } else {
      renderJobRow(job);
    }
  }

  async function refreshJobs({ reset = false } = {}) {
    if (!apiKey) {
      return;
    }
    if (jobsInFlight && !reset) {
      return;
    }
    const key = apiKey;
    const request = (async () => {
      try {
        const page = await api(`jobs?${jobFilters()}`);
        if (key !== apiKey) {
          return;
        }
        const fresh = page.results || [];
        const freshIds = fresh.map((job) => job.id);
        // The first page is replaced; older pages the user loaded stay.
        const oldestFresh = fresh.length ? String(fresh[fresh.length - 1].created_at) : "";
        const older = reset || !page.next ? [] : jobOrder.filter((id) => {
          const job = jobs.get(id);
          return job && !freshIds.includes(id) && String(job.created_at) < oldestFresh;
        });
        if (!older.length) {
          nextCursor = page.next;
        }
        fresh.forEach((job) => jobs.set(job.id, { ...(jobs.get(job.id) || {}), ...job }));
        jobOrder = [...freshIds, ...older];
        renderJobs();
        fresh.forEach((job) => {
          if (cards.has(job.id) && !streams.has(job.id)) {
            updateCard(job); // the stream ended: the list keeps the card current
          }
        });
        pollCards(freshIds);
        clearError($("pg-jobs-error"));
        $("pg-jobs-status-line").textContent = `Updated ${timeFormat.format(new Date())} · refreshes every ${JOBS_POLL_MS / 1000} s`;
        root.dataset.jobsRefreshed = String(Number(root.dataset.jobsRefreshed || 0) + 1);
      } catch (error) {
        if (key === apiKey) {
          showError($("pg-jobs-error"), error);
          $("pg-jobs-status-line").textContent = "Could not refresh the jobs.";
        }
      }
    })();
    jobsInFlight = request;
    try {
      await request;
    } finally {
      if (jobsInFlight === request) {
        jobsInFlight = null;
      }
    }
  }

  async function loadOlderJobs() {
    if (!nextCursor) {
      return;
    }
    const button = $("pg-jobs-more");
    button.disabled = true;
    try {
      const url = new URL(nextCursor, window.location.href);
      const page = await api(url.pathname + url.search);
      (page.results || []).forEach((job) => {
        jobs.set(job.id, job);
        if (!jobOrder.includes(job.id)) {
          jobOrder.push(job.id);
        }
      });
      nextCursor = page.next;
      renderJobs();
    } catch (error) {
      showError($("pg-jobs-error"), error);
    } finally {
      button.disabled = false;
    }
  }

  function scheduleJobsPoll() {
    clearTimeout(jobsTimer);
    if (!apiKey) {
      return;
    }
    jobsTimer = setTimeout(async () => {
      if (document.visibilityState !== "hidden") {
        await refreshJobs();
      }
      scheduleJobsPoll();
    }, JOBS_POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && apiKey) {
      refreshJobs();
    }
  });

  function renderJobs() {
    const list = $("pg-job-list");
    const rows = jobOrder.map((id) => jobs.get(id)).filter(Boolean).map((job) => renderJobRow(job, { create: true }));
    list.replaceChildren(...rows);
    $("pg-jobs-empty").hidden = rows.length > 0;
    $("pg-jobs-more").hidden = !nextCursor;
  }

  const jobRows = new Map(); // id -> <li>

  function fingerprint(job) {
    return JSON.stringify([job.status, job.progress, job.stage, job.error, job.result && job.result.url, job.metadata]);
  }

  function renderJobRow(job, { create = false } = {}) {
    let row = jobRows.get(job.id);
    if (row && row.dataset.fingerprint === fingerprint(job)) {
      return row;
    }
    if (!row && !create) {
      return null;
    }
    if (!row) {
      row = el("li", { className: "pg-job", dataset: { jobId: job.id } });
      jobRows.set(job.id, row);
    }
    row.dataset.status = job.status;
    row.dataset.fingerprint = fingerprint(job);
    const text = job.input && job.input.text;
    const label = job.metadata && job.metadata.label;
    const summary = label || (text ? `“${text.length > 90 ? text.slice(0, 89) + "…" : text}”` : job.input && job.input.audio ? "from uploaded audio" : "");
    const took = job.status === "succeeded" && !job.cache_hit ? elapsed(job.created_at, job.finished_at) : null;
    const detail = job.status === "failed" && job.error
      ? el("span", { className: "pg-job-error" }, el("code", { text: job.error.code }), " ", job.error.message)
      : job.status === "running"
        ? el("span", { className: "pg-job-progress" },
          el("progress", { max: "100", value: String(job.progress || 0), "aria-label": "Progress" }),
          ` ${job.progress || 0} % ${humanStage(job.stage)}`)
        : job.status === "succeeded"
          ? el("span", { className: "pg-muted", text: [seconds(job.result && job.result.duration_s), job.cache_hit ? "cache hit" : took !== null ? `made in ${seconds(took)}` : ""].filter(Boolean).join(" · ") })
          : null;
    const actions = [];
    actions.push(el("button", { type: "button", className: "pg-button pg-small pg-quiet pg-open", text: "Open", onclick: () => {
      const card = openCard(jobs.get(job.id) || job);
      card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    } }));
    if (ACTIVE.has(job.status)) {
      actions.push(el("button", { type: "button", className: "pg-button pg-small pg-cancel", text: "Cancel",
        onclick: (event) => cancelJob(job.id, event.currentTarget, $("pg-jobs-error")) }));
    }
    if (job.status === "succeeded") {
      actions.push(el("button", { type: "button", className: "pg-button pg-small pg-download", text: "Download",
        onclick: (event) => downloadJob(job.id, event.currentTarget) }));
    }
    row.replaceChildren(...[
      el("div", { className: "pg-job-main" },
        el("span", { className: `pg-badge pg-status-${job.status}`, text: job.status }),
        el("span", { className: "pg-job-kind", text: KIND_LABELS[job.kind] || job.kind }),
        el("code", { className: "pg-job-id", title: job.id, text: shortId(job.id) }),
        el("time", { className: "pg-muted", datetime: job.created_at, title: job.created_at ? dateTimeFormat.format(new Date(job.created_at)) : "", text: clock(job.created_at) })),
      summary ? el("p", { className: "pg-job-summary", text: summary }) : null,
      detail ? el("p", { className: "pg-job-detail" }, detail) : null,
      el("div", { className: "pg-row-actions" }, actions),
    ].filter(Boolean));
    return row;
  }

  async function cancelJob(jobId, button, box) {
    button.disabled = true;
    try {
      const job = await api(`jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
      upsertJob(job);
      updateCard(job);
      clearError(box);
    } catch (error) {
      showError(box, error);
      button.disabled = false;
    }
  }

  async function downloadJob(jobId, button) {
    const job = jobs.get(jobId);
    button.disabled = true;
    try {
      const result = await loadResult(job);
      const link = el("a", { href: result.remote ? result.url : result.objectUrl, download: result.remote ? null : result.filename,
        target: result.remote ? "_blank" : null, rel: "noopener", hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      clearError($("pg-jobs-error"));
    } catch (error) {
      showError($("pg-jobs-error"), error);
    } finally {
      button.disabled = false;
    }
  }

  $("pg-jobs-refresh").addEventListener("click", () => refreshJobs({ reset: true }));
  $("pg-jobs-more").addEventListener("click", loadOlderJobs);
  $("pg-jobs-status").addEventListener("change", () => refreshJobs({ reset: true }));
  $("pg-jobs-kind").addEventListener("change", () => refreshJobs({ reset: true }));

  // ------------------------------------------------------------------ start
  root.querySelectorAll("[data-languages]").forEach(fillLanguages);
  $("pg-tts-format").replaceChildren(...CATALOG.formats.map((format) => el("option", { value: format, text: format.toUpperCase() })));
  $("pg-tts-format").value = CATALOG.formats.includes("wav") ? "wav" : CATALOG.formats[0];
  $("pg-tts-text").maxLength = CATALOG.max_text_chars;
  fillVoiceSelects();
  fillTtsEngines();
  fillVideoEngines();
  updateSource();
  updateCounter();
  updateResultsEmpty();

  const stored = readStoredKey();
  if (stored) {
    keyInput.value = stored;
    useKey(stored, { fromStorage: true });
  }
  root.dataset.ready = "1";
})();
