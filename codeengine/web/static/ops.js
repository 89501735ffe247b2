/*
 * The ops console. Live metrics come from the issuer's GET /v1/ops/metrics (scope admin: the
 * Prometheus exposition that the management port serves as /metrics, parsed here: no second
 * set of counters); rates and p99 are over the interval
 * between two polls. City state comes from GET /v1/ops/cities (scope admin), recent batches
 * from GET /v1/batches (scope convert), the records service from GET /v1/ops/records (scope
 * admin: the status it publishes to Redis every 10 s, with its age). Each panel fails on its own: one missing endpoint or
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
    "records.title": ["专题库（记录服务）", "Topic library (records service)"],
    "records.published": ["发布于", "Published"],
    "records.retention": ["保留天数", "Retention"],
    "records.oldest": ["最早保留日", "Oldest day kept"],
    "records.size": ["存储大小", "Store size"],
    "records.rows": ["总行数", "Rows"],
    "records.lag": ["待入库", "Waiting"],
    "records.tables": ["各表", "Tables"],
    "records.table": ["表", "Table"],
    "records.bytes": ["大小", "Size"],
    "records.streams": ["积压的流", "Streams with entries waiting"],
    "records.stream": ["流", "Stream"],
    "records.entries": ["条目", "Entries"],
    "records.age": ["最早等待", "Oldest waiting"],
    "records.days": ["每日行数", "Rows per day"],
    "records.day": ["日期（UTC）", "Day (UTC)"],
    "records.scans": ["扫码", "Scans"],
    "records.changes": ["变码", "Changes"],
    "records.access": ["查询记录", "Access"],
    "records.ago": ["{s} 秒前", "{s} s ago"],
    "records.days_n": ["{n} 天", "{n} days"],
    "records.lagText": ["{n} 条，最早 {s} 秒", "{n} entries, oldest {s} s"],
    "records.nolag": ["无积压", "None waiting"],
    "records.fresh": ["记录服务每 10 秒发布一次状态", "The records service publishes every 10 s"],
    "records.stale": ["状态已过期：记录服务 {s} 秒未发布（未运行或连不上 Redis）", "Stale: the records service has not published for {s} s (down, or cannot reach Redis)"],
    "records.never": ["记录服务尚未发布状态", "The records service has not published a status"],
    "records.nokey": ["需要 admin 密钥", "Needs an admin key"],
    "table.scans": ["扫码 scans", "scans"],
    "table.changes": ["变码 changes", "changes"],
    "table.access": ["查询记录 access", "access"],
    "feed.scans": ["扫码", "scans"],
    "feed.changes": ["变码", "changes"],
  });

  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let keys = { admin: "", convert: "" };
  let previous = null; // the last metrics sample: {at, ops}
  let timer = 0;
  let last = { cities: null, batches: null, ops: null, records: null };

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

  // Records ---------------------------------------------------------------------------------------

  function bytesText(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = Number(bytes) || 0;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
  }

  /** A count with thousands separators, the same in either language. */
  const num = (n) => Number(n).toLocaleString("en-US");

  function field(name, text) {
    $("records").querySelector(`[data-field=${name}]`).textContent = text;
  }

  /** Draw the records panel from a GET /v1/ops/records document. */
  function renderRecords(doc) {
    const panel = $("records");
    last.records = doc;
    const bodies = ["tables", "streams", "days"].map((c) => panel.querySelector(`table.${c} tbody`));
    if (!doc || !doc.published) {
      bodies.forEach((b) => b.replaceChildren());
      for (const name of ["published", "retention", "oldest", "size", "rows", "lag"]) field(name, "—");
      panel.dataset.stale = "true";
      panelState("records", "unavailable", CE.t("records.never"));
      return;
    }
    const age = Math.round(doc.age_s);
    field("published", `${timeText(doc.published_at / 1000)} (${CE.t("records.ago", { s: age })})`);
    field("retention", CE.t("records.days_n", { n: doc.retention_days }));
    field("oldest", doc.oldest_day || "—");
    field("size", bytesText(doc.store_bytes));
    field("rows", num(doc.rows));
    field("lag", doc.lag_entries
      ? CE.t("records.lagText", { n: num(doc.lag_entries), s: Math.round(doc.lag_oldest_s) })
      : CE.t("records.nolag"));
    bodies[0].replaceChildren(...doc.tables.map((t) => CE.el("tr", { "data-table": t.table },
      CE.el("th", { scope: "row" }, CE.t(`table.${t.table}`)),
      CE.el("td", { class: "num", "data-field": "rows" }, num(t.rows)),
      CE.el("td", { class: "num", "data-field": "bytes" }, bytesText(t.bytes)))));
    const waiting = doc.lag.filter((s) => s.entries > 0)
      .sort((a, b) => b.oldest_age_s - a.oldest_age_s);
    bodies[1].replaceChildren(...(waiting.length ? waiting.map((s) =>
      CE.el("tr", { "data-stream": `${s.feed}:${s.city}` },
        CE.el("th", { scope: "row" }, CE.t(`feed.${s.feed}`)),
        CE.el("td", {}, CE.cityName(s.city)),
        CE.el("td", { class: "num", "data-field": "entries" }, num(s.entries)),
        CE.el("td", { class: "num", "data-field": "age" }, `${Math.round(s.oldest_age_s)} s`)))
      : [CE.el("tr", {}, CE.el("td", { colspan: "4" }, CE.t("records.nolag")))]));
    const days = [...doc.days].reverse();
    bodies[2].replaceChildren(...days.map((d) => CE.el("tr", { "data-day": d.day },
      CE.el("th", { scope: "row" }, d.day),
      ...["scans", "changes", "access"].map((t) =>
        CE.el("td", { class: "num", "data-field": t }, num(d.rows[t] || 0))))));
    panel.dataset.stale = String(Boolean(doc.stale));
    if (doc.stale) panelState("records", "error", CE.t("records.stale", { s: age }));
    else panelState("records", "ok", CE.t("records.fresh"));
  }

  async function pollRecords() {
    if (!keys.admin) { panelState("records", "nokey", CE.t("records.nokey")); return; }
    try {
      const { result } = await CE.api("/v1/ops/records", keys.admin);
      renderRecords(result);
    } catch (err) {
      panelState("records", "error", CE.t("error", { reason: err.reason }));
    }
  }

  async function poll() {
    clearTimeout(timer);
    await Promise.all([pollMetrics(), pollCities(), pollBatches(), pollRecords()]);
    $("updated").textContent = CE.clock(Date.now());
    timer = setTimeout(poll, POLL_MS);
  }

  function redraw() {
    if (last.cities) renderCities(last.cities);
    if (last.batches) renderBatches(last.batches);
    if (last.ops) renderOperations(...last.ops);
    if (last.records) renderRecords(last.records);
  }

  /** Start with the keys the operator (or a test) hands over. */
  function start(given) {
    keys = { admin: String(given.admin || ""), convert: String(given.convert || "") };
    sessionStorage.setItem("ce-ops", JSON.stringify(keys));
    $("setup").hidden = true;
    poll();
  }

  window.codeEngineOps = { start, renderCities, renderRecords, parseMetrics };

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
