/*
 * The ops console. Live metrics come from the issuer's GET /v1/ops/metrics (scope admin: the
 * Prometheus exposition that the management port serves as /metrics, parsed here: no second
 * set of counters); rates and p99 are over the interval
 * between two polls. City state comes from GET /v1/ops/cities (scope admin), recent batches
 * from GET /v1/batches (scope convert). Each panel fails on its own: one missing endpoint or
 * key never blanks the others.
 */
"use strict";

(() => {
  CE.addTexts({
    title: ["运维控制台", "Ops console"],
    lang: ["English", "中文"],
    keys: ["密钥", "Keys"],
    updated: ["更新于", "Updated"],
    "setup.help": ["密钥只保存在本标签页的会话中，不会出现在网址里。", "Keys stay in this tab's session, never in a URL."],
    "setup.admin": ["管理密钥（admin，城市状态）", "Admin key (admin: city state)"],
    "setup.convert": ["转码密钥（convert，批量任务）", "Convert key (convert: batches)"],
    "setup.save": ["开始", "Start"],
    "cities.title": ["各城市主备状态", "Cities: primary and backup"],
    "cities.city": ["城市", "City"],
    "cities.writer": ["写入端", "Writer"],
    "cities.epoch": ["纪元", "Epoch"],
    "cities.since": ["自", "Since"],
    "cities.last": ["最近切换", "Last switch"],
    "cities.switches": ["最近切换", "Recent switches"],
    "cities.unavailable": ["城市状态不可用", "City state unavailable"],
    "cities.nokey": ["需要 admin 密钥", "Needs an admin key"],
    "cities.none": ["暂无切换", "No switches"],
    "writer.primary": ["主用", "primary"],
    "writer.backup": ["备用", "backup"],
    "writer.none": ["无", "none"],
    "writer.idle": ["未启用", "not started"],
    "why.start": ["启动", "start"],
    "why.lease_expired": ["租约过期", "lease expired"],
    "why.handback": ["回切", "handback"],
    "why.planned": ["计划切换", "planned"],
    "ops.title": ["各操作请求", "Requests by operation"],
    "ops.operation": ["操作", "Operation"],
    "ops.rate": ["请求/秒", "req/s"],
    "ops.errors": ["错误/秒", "errors/s"],
    "ops.p99": ["p99", "p99"],
    "ops.total": ["累计", "Total"],
    "ops.errorsTotal": ["累计错误", "Errors total"],
    "ops.source": ["来源：本服务 /metrics，每 {s} 秒", "From this service's /metrics, every {s} s"],
    "ops.nokey": ["需要 admin 密钥", "Needs an admin key"],
    "batches.title": ["最近批量转码", "Recent bulk batches"],
    "batches.id": ["批次", "Batch"],
    "batches.state": ["状态", "State"],
    "batches.progress": ["进度", "Progress"],
    "batches.rows": ["行数", "Rows"],
    "batches.applied": ["已变更", "Applied"],
    "batches.bad": ["错误行", "Bad rows"],
    "batches.updated": ["更新", "Updated"],
    "batches.nokey": ["需要 convert 密钥", "Needs a convert key"],
    "batches.empty": ["暂无批次", "No batches yet"],
    "state.running": ["导入中", "running"],
    "state.done": ["完成", "done"],
    "state.failed": ["失败", "failed"],
    "state.rolled_back": ["已回滚", "rolled back"],
    error: ["读取失败：{reason}", "Could not read: {reason}"],
  });

  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let keys = { admin: "", convert: "" };
  let previous = null; // the last metrics sample: {at, ops}
  let timer = 0;
  let last = { cities: null, batches: null, ops: null };

  function panelState(id, state, text) {
    const panel = $(id);
    panel.dataset.state = state;
    panel.querySelector(".status").textContent = text || "";
  }

  function timeText(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    return `${CE.dateText(seconds * 1000).slice(5)} ${CE.clock(seconds * 1000)}`;
  }

  // Metrics ------------------------------------------------------------------------------------

  const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

  /** Per operation: total and error counts, and the latency histogram's cumulative buckets. */
  function parseMetrics(text) {
    const ops = {};
    const op = (name) => (ops[name] ??= { total: 0, errors: 0, buckets: {} });
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = LINE.exec(line);
      if (!match) continue;
      const [, name, rawLabels, rawValue] = match;
      if (name !== "codeengine_requests_total" && name !== "codeengine_request_duration_seconds_bucket") continue;
      const labels = {};
      for (const [, key, value] of (rawLabels || "").matchAll(LABEL)) labels[key] = value;
      if (!labels.operation) continue;
      const value = Number(rawValue);
      if (name === "codeengine_requests_total") {
        op(labels.operation).total += value;
        if (labels.reason !== "OK") op(labels.operation).errors += value;
      } else {
        const buckets = op(labels.operation).buckets;
        buckets[labels.le] = (buckets[labels.le] || 0) + value;
      }
    }
    return ops;
  }

  /** The upper bound of the bucket holding the 99th percentile of the counts in ``buckets``. */
  function p99(buckets) {
    const bounds = Object.keys(buckets).sort((a, b) => Number(a) - Number(b));
    const count = buckets["+Inf"] || 0;
    if (count <= 0) return null;
    for (const le of bounds) {
      if (buckets[le] >= 0.99 * count) return le === "+Inf" ? Infinity : Number(le);
    }
    return Infinity;
  }

  function latencyText(seconds) {
    if (seconds === null) return "—";
    if (seconds === Infinity) return "> 2.5 s";
    return seconds < 1 ? `≤ ${seconds * 1000} ms` : `≤ ${seconds} s`;
  }

  function renderOperations(sample, before) {
    const tbody = $("operations").querySelector("tbody");
    const rows = [];
    const names = Object.keys(sample.ops).sort();
    for (const name of names) {
      const now = sample.ops[name];
      const then = before ? before.ops[name] || { total: 0, errors: 0, buckets: {} } : null;
      const dt = before ? (sample.at - before.at) / 1000 : 0;
      const window = {};
      for (const [le, value] of Object.entries(now.buckets)) {
        window[le] = value - (then ? then.buckets[le] || 0 : 0);
      }
      const rate = then && dt > 0 ? ((now.total - then.total) / dt).toFixed(1) : "—";
      const errors = then && dt > 0 ? ((now.errors - then.errors) / dt).toFixed(1) : "—";
      rows.push(CE.el("tr", { "data-operation": name },
        CE.el("th", { scope: "row" }, name),
        CE.el("td", { class: "num", "data-field": "rate" }, rate),
        CE.el("td", { class: "num", "data-field": "errors" }, errors),
        CE.el("td", { class: "num", "data-field": "p99" }, latencyText(then ? p99(window) : p99(now.buckets))),
        CE.el("td", { class: "num", "data-field": "total" }, String(now.total)),
        CE.el("td", { class: "num", "data-field": "errors-total" }, String(now.errors))));
    }
    tbody.replaceChildren(...rows);
    panelState("operations", "ok", CE.t("ops.source", { s: POLL_MS / 1000 }));
  }

  async function pollMetrics() {
    if (!keys.admin) { panelState("operations", "nokey", CE.t("ops.nokey")); return; }
    try {
      const response = await fetch("/v1/ops/metrics", {
        cache: "no-store",
        credentials: "omit",
        headers: { Authorization: `Bearer ${keys.admin}` },
      });
      if (!response.ok) throw new CE.ApiError(response.status, `HTTP_${response.status}`);
      const sample = { at: Date.now(), ops: parseMetrics(await response.text()) };
      last.ops = [sample, previous];
      renderOperations(sample, previous);
      previous = sample;
    } catch (err) {
      panelState("operations", "error", CE.t("error", { reason: err.reason || "NETWORK" }));
    }
  }

  // Cities ----------------------------------------------------------------------------------------

  function writerBadge(writer, epoch) {
    // No holder and never an epoch: the city's endpoints have not run (not an outage).
    const idle = !writer && !epoch;
    const kind = writer === "primary" || writer === "backup" ? writer : idle ? "idle" : "none";
    return CE.el("span", { class: `badge ${kind}`, "data-writer": kind }, CE.t(`writer.${kind}`));
  }

  function switchText(city, change) {
    const from = CE.t(`writer.${change.from || "none"}`);
    const to = CE.t(`writer.${change.to || "none"}`);
    const why = CE.t(`why.${change.why}`);
    return `${timeText(change.at)} ${city} ${from} → ${to} (${why}, #${change.epoch})`;
  }

  function cityLabel(city) {
    return CE.lang === "zh" ? city.name || CE.cityName(city.code) : city.name_en || CE.cityName(city.code);
  }

  /** Draw the city panel from a GET /v1/ops/cities document. */
  function renderCities(doc) {
    const cities = Array.isArray(doc && doc.cities) ? doc.cities : [];
    const rows = [];
    const all = [];
    for (const city of cities) {
      const label = cityLabel(city);
      const switches = Array.isArray(city.switches) ? city.switches : [];
      for (const change of switches) all.push([change.at, switchText(label, change), city.code]);
      rows.push(CE.el("tr", { "data-city": String(city.code) },
        CE.el("th", { scope: "row" }, label),
        CE.el("td", { "data-field": "writer" }, writerBadge(city.writer, city.epoch)),
        CE.el("td", { class: "num", "data-field": "epoch" }, String(city.epoch ?? "—")),
        CE.el("td", { "data-field": "since" }, timeText(city.since)),
        CE.el("td", { "data-field": "last" }, switches.length ? switchText(label, switches[0]) : CE.t("cities.none"))));
    }
    $("cities").querySelector("tbody").replaceChildren(...rows);
    all.sort((a, b) => b[0] - a[0]);
    $("cities").querySelector(".switches").replaceChildren(
      ...all.slice(0, 20).map(([, text, code]) => CE.el("li", { "data-city": String(code) }, text)));
    last.cities = doc;
    panelState("cities", "ok", "");
  }

  async function pollCities() {
    if (!keys.admin) { panelState("cities", "nokey", CE.t("cities.nokey")); return; }
    try {
      const { result } = await CE.api("/v1/ops/cities", keys.admin);
      renderCities(result);
    } catch (err) {
      if (err.status === 404) {
        $("cities").querySelector("tbody").replaceChildren();
        $("cities").querySelector(".switches").replaceChildren();
        panelState("cities", "unavailable", CE.t("cities.unavailable"));
      } else {
        panelState("cities", "error", CE.t("error", { reason: err.reason }));
      }
    }
  }

  // Batches ---------------------------------------------------------------------------------------

  function renderBatches(doc) {
    const rows = doc.batches.map((batch) => {
      const bar = CE.el("progress", { "aria-label": batch.batch_id });
      if (batch.state !== "running") { bar.max = Math.max(batch.rows, 1); bar.value = Math.max(batch.rows, 1); }
      return CE.el("tr", { "data-batch": batch.batch_id, "data-state": batch.state },
        CE.el("th", { scope: "row" }, batch.batch_id),
        CE.el("td", { "data-field": "state" }, CE.t(`state.${batch.state}`)),
        CE.el("td", { "data-field": "progress" }, bar),
        CE.el("td", { class: "num", "data-field": "rows" }, String(batch.rows)),
        CE.el("td", { class: "num", "data-field": "applied" }, String(batch.applied)),
        CE.el("td", { class: "num", "data-field": "bad" }, String(batch.bad)),
        CE.el("td", { "data-field": "updated" }, timeText(batch.updated_at)));
    });
    $("batches").querySelector("tbody").replaceChildren(...rows);
    last.batches = doc;
    panelState("batches", "ok", rows.length ? "" : CE.t("batches.empty"));
  }

  async function pollBatches() {
    if (!keys.convert) { panelState("batches", "nokey", CE.t("batches.nokey")); return; }
    try {
      const { result } = await CE.api("/v1/batches?limit=10", keys.convert);
      renderBatches(result);
    } catch (err) {
      panelState("batches", "error", CE.t("error", { reason: err.reason }));
    }
  }

  async function poll() {
    clearTimeout(timer);
    await Promise.all([pollMetrics(), pollCities(), pollBatches()]);
    $("updated").textContent = CE.clock(Date.now());
    timer = setTimeout(poll, POLL_MS);
  }

  function redraw() {
    if (last.cities) renderCities(last.cities);
    if (last.batches) renderBatches(last.batches);
    if (last.ops) renderOperations(...last.ops);
  }

  /** Start with the keys the operator (or a test) hands over. */
  function start(given) {
    keys = { admin: String(given.admin || ""), convert: String(given.convert || "") };
    sessionStorage.setItem("ce-ops", JSON.stringify(keys));
    $("setup").hidden = true;
    poll();
  }

  window.codeEngineOps = { start, renderCities, parseMetrics };

  document.addEventListener("DOMContentLoaded", () => {
    CE.languageToggle($("lang"));
    document.addEventListener("codeengine:language", redraw);
    CE.applyLanguage();
    $("keys").addEventListener("click", () => { $("setup").hidden = !$("setup").hidden; });
    $("setup").addEventListener("submit", (event) => {
      event.preventDefault();
      start({ admin: $("admin-key").value, convert: $("convert-key").value });
      $("admin-key").value = "";
      $("convert-key").value = "";
    });
    const fragment = CE.takeFragment();
    const kept = sessionStorage.getItem("ce-ops");
    if (fragment.admin || fragment.convert) start(fragment);
    else if (kept) start(JSON.parse(kept));
    else { $("setup").hidden = false; poll(); }
  });
})();
