/*
 * 扫码核验: the terminal page. A keyboard-wedge scanner types the code and Enter into the
 * focused input; the page posts it to the verifier's /v1/verify with the terminal's verify key
 * and shows the verdict full-screen. No reload between scans: the input is cleared and focused
 * again at once, and scans that arrive while one is checked are answered in order.
 *
 * Cue hook for integrators (sound, lights, a turnstile): listen for the "codeengine:verdict"
 * event on window, or set window.codeEngineTerminal.onVerdict = (verdict) => {...}. The page
 * vibrates where navigator.vibrate exists: one short pulse for a valid green code, three long
 * ones for anything else.
 *
 * Offline (terminal-offline.js): when /v1/verify does not answer within the terminal's deadline
 * (or the network fails, or the verifier answers 5xx), the page checks the code itself with the
 * JavaScript verifier against the signed lists it keeps, says so with the time of those lists,
 * and queues the scan for the scan log. A service worker (/pages/terminal-worker.js) keeps the
 * page loadable with no network after the first visit.
 */
"use strict";

(() => {
  CE.addTexts({
    title: ["扫码核验", "Scan check"],
    lang: ["English", "中文"],
    settings: ["设置", "Settings"],
    idle: ["请扫码", "Scan a code"],
    checking: ["核验中", "Checking"],
    "scan.label": ["扫码输入", "Scanner input"],
    "setup.help": ["本终端的核验密钥（verify）与位置，保存在本机。", "This terminal's verify key and place, kept on this device."],
    "setup.key": ["核验密钥", "Verify key"],
    "setup.terminal": ["终端编号", "Terminal id"],
    "setup.venue": ["场所编号", "Venue id"],
    "setup.city": ["城市代码", "City code"],
    "setup.save": ["保存", "Save"],
    "setup.anchor": ["信任锚（离线核验）", "Trust anchor (offline checks)"],
    "setup.deadline": ["在线核验时限（毫秒）", "Online check deadline (ms)"],
    "offline.checked": ["离线核验 · 名单截至 {time}", "Checked offline · lists as of {time}"],
    "offline.noLists": ["无可用的离线名单", "No lists for an offline check"],
    "network.offline": ["离线 · {waiting} 条待上传", "Offline · {waiting} scans waiting to be sent"],
    "network.waiting": ["{waiting} 条待上传", "{waiting} scans waiting to be sent"],
    "network.dropped": ["（已丢弃 {dropped} 条）", " ({dropped} dropped)"],
    "network.refused": ["（被拒 {refused} 条）", " ({refused} refused)"],
    "network.expired": ["（过期 {expired} 条）", " ({expired} too old to send)"],
    "word.green": ["绿码", "GREEN"],
    "word.yellow": ["黄码", "YELLOW"],
    "word.red": ["红码", "RED"],
    "word.grey": ["灰码", "GREY"],
    "word.invalid": ["无效码", "INVALID"],
    "word.error": ["无法核验", "NOT CHECKED"],
    "action.green": ["有效 · 请通行", "Valid: go ahead"],
    "action.yellow": ["有效 · 请按规定查验", "Valid: check as the rules say"],
    "action.red": ["有效 · 禁止通行", "Valid: do not admit"],
    "action.grey": ["状态无法确认 · 请人工核验", "No status to vouch for: check by hand"],
    "reason.MALFORMED": ["无法识别的码", "Not a code this terminal can read"],
    "reason.UNSUPPORTED_ALG": ["不支持的签名算法", "Unsupported signature algorithm"],
    "reason.UNKNOWN_KID": ["签名密钥未知", "Signed with an unknown key"],
    "reason.BAD_SIGNATURE": ["签名无效：码已被篡改", "Bad signature: the code was altered"],
    "reason.EXPIRED": ["码已过期，请刷新后再扫", "Expired: refresh the code and scan again"],
    "reason.NOT_YET_VALID": ["码尚未生效，请检查设备时间", "Not valid yet: check the device clock"],
    "reason.REVOKED": ["码已被撤销", "The code was revoked"],
    "reason.WRONG_CITY": ["非本市的码", "A code of another city"],
    "reason.UNKNOWN_SUBJECT": ["查无此人", "No such subject"],
    "reason.UNKNOWN_ALIAS": ["此卡未绑定", "This card is not bound"],
    "reason.TRUST_LIST_STALE": ["信任列表过旧", "The trust list is too old"],
    "reason.STORE_UNAVAILABLE": ["服务暂不可用", "Service unavailable"],
    "reason.UNAUTHORIZED": ["终端密钥无效，请在设置中更新", "Terminal key not valid: update it in settings"],
    "reason.FORBIDDEN": ["终端无核验权限", "This terminal may not verify"],
    "reason.RATE_LIMITED": ["扫码过快，请稍候", "Too fast: wait a moment"],
    "reason.NETWORK": ["网络不通", "No network"],
    "reason.UNKNOWN_CITY": ["终端城市设置有误", "The terminal's city is wrong"],
    "reason.OFFLINE_UNSUPPORTED": ["此码无法离线核验，请待网络恢复", "This code cannot be checked offline: wait for the network"],
    "reason.OTHER": ["核验失败：{reason}", "Check failed: {reason}"],
    degraded: ["离线核验：仅凭签名，颜色为签发时状态", "Degraded: signature only, colour as issued"],
    notConfigured: ["请先在设置中填写本终端信息", "Set this terminal up in settings first"],
  });

  const RESULT_MS = 8000;
  const DEADLINE_MS = 1500;
  const RETRY_MS = 10_000;
  const OFFSET_KEY = "ce-terminal-clock-offset";
  // The Date header has whole seconds: an offset within this is the header's rounding, not a
  // wrong device clock, and is not applied.
  const OFFSET_MIN_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let config = null;
  let queue = Promise.resolve();
  let idleTimer = 0;
  let count = 0;
  let shown = null; // the last verdict shown, for a language switch
  let desk = Promise.resolve(null); // the OfflineDesk of the configuration, once loaded
  let refreshTimer = 0;
  let sending = false;
  let offline = false;
  // How far the verifier's clock is ahead of the device's (ms), learnt from its Date header
  // while online and kept on the device, so that an offline scan after a restart is still
  // stamped and checked at the verifier's time: a device clock minutes fast would otherwise
  // have every offline scan refused SCAN_IN_FUTURE when sent.
  let offsetMs = Number(localStorage.getItem(OFFSET_KEY)) || 0;

  /** Seconds since the epoch: the device's clock, or the hook a test sets. */
  function clock() {
    const hook = window.codeEngineTerminal.clock;
    return typeof hook === "function" ? hook() : Date.now() / 1000;
  }

  /** Seconds since the epoch as the verifier counts them: the device's clock, corrected. */
  function verifierClock() {
    return clock() + offsetMs / 1000;
  }

  /** Learn the offset from an answer's Date (ms; its second, so the middle of that second). */
  function learnOffset(serverDate) {
    if (serverDate === null) return;
    const measured = serverDate + 500 - clock() * 1000;
    const next = Math.abs(measured) > OFFSET_MIN_MS ? Math.round(measured) : 0;
    if (next !== offsetMs) {
      offsetMs = next;
      localStorage.setItem(OFFSET_KEY, String(offsetMs));
    }
  }

  function reasonText(reason) {
    const key = `reason.${reason}`;
    return CE.t(key) === key ? CE.t("reason.OTHER", { reason }) : CE.t(key);
  }

  function show(outcome) {
    shown = outcome;
    const result = $("result");
    clearTimeout(idleTimer);
    let colour = "none";
    let word;
    let reason = "";
    let detail = "";
    if (outcome.state === "idle" || outcome.state === "checking") {
      word = CE.t(outcome.state);
    } else if (outcome.state === "error") {
      word = CE.t("word.error");
      reason = outcome.reason === "NOT_CONFIGURED" ? CE.t("notConfigured") : reasonText(outcome.reason);
    } else if (outcome.verdict.valid) {
      colour = outcome.verdict.colour || "grey";
      word = CE.t(`word.${colour}`);
      reason = CE.t(`action.${colour}`);
      if (outcome.verdict.degraded) detail = CE.t("degraded");
    } else {
      word = CE.t("word.invalid");
      reason = reasonText(outcome.verdict.reason);
    }
    if (outcome.offline) detail = CE.t("offline.checked", { time: CE.clock(outcome.offline.asOfMs) });
    else if (outcome.state === "error" && outcome.reason === "NETWORK") detail = CE.t("offline.noLists");
    const invalid = outcome.state === "verdict" && !outcome.verdict.valid;
    result.className = `result c-${colour}${invalid || outcome.state === "error" ? " invalid" : ""}`;
    result.dataset.state = outcome.state;
    result.dataset.colour = colour;
    result.dataset.valid = outcome.state === "verdict" ? String(outcome.verdict.valid) : "";
    result.dataset.reason = outcome.state === "verdict" ? outcome.verdict.reason : (outcome.reason || "");
    result.dataset.count = String(count);
    result.dataset.mode = outcome.offline || outcome.unchecked ? "offline" : "online";
    result.dataset.asOf = outcome.offline ? String(outcome.offline.asOfMs) : "";
    $("word").textContent = word;
    $("reason").textContent = reason;
    $("detail").textContent = detail;
    if (outcome.state === "verdict" || outcome.state === "error") {
      idleTimer = setTimeout(() => show({ state: "idle" }), RESULT_MS);
    }
  }

  function cue(verdict, offlineAsOfMs = null) {
    const detail = { valid: verdict.valid, colour: verdict.colour ?? null, reason: verdict.reason, offline: offlineAsOfMs !== null };
    const good = verdict.valid && verdict.colour === "green";
    if (typeof navigator.vibrate === "function") navigator.vibrate(good ? 80 : [250, 120, 250, 120, 250]);
    window.dispatchEvent(new CustomEvent("codeengine:verdict", { detail }));
    const hook = window.codeEngineTerminal.onVerdict;
    if (typeof hook === "function") {
      try { hook(detail); } catch (err) { console.error("onVerdict hook failed", err); }
    }
  }

  async function network() {
    const held = await desk;
    const { waiting, dropped, refused, expired } = held ? held.queued() : { waiting: 0, dropped: 0, refused: 0, expired: 0 };
    const line = $("network");
    line.dataset.mode = offline ? "offline" : "online";
    line.dataset.waiting = String(waiting);
    let text = "";
    if (offline) text = CE.t("network.offline", { waiting });
    else if (waiting > 0) text = CE.t("network.waiting", { waiting });
    // Scans lost from the queue are shown until the page's storage is cleared: never silently.
    const lost = [["dropped", dropped], ["refused", refused], ["expired", expired]].filter(([, n]) => n > 0);
    if (lost.length > 0 && !text) text = CE.t("network.waiting", { waiting });
    for (const [name, n] of lost) text += CE.t(`network.${name}`, { [name]: n });
    line.textContent = text;
  }

  /** Send the queued offline scans, one send at a time; what fails waits for the next try. */
  async function sendQueued() {
    const held = await desk;
    if (sending || !held || held.queued().waiting === 0) return;
    sending = true;
    try {
      await held.send(config.key);
    } catch (err) {
      // Still unreachable, or refused: the queue stays for the next try.
    } finally {
      sending = false;
      await network();
    }
  }

  /**
   * The verdict of the JavaScript verifier, queued for the scan log; null without lists. A text
   * that is not the engine's code is neither checked nor queued (`unsupported`): it may carry a
   * resident or social-security number, and no list here can vouch for it.
   */
  async function checkOffline(code) {
    const held = await desk;
    if (!held) return null;
    if (!held.constructor.canCheck(code)) return { unsupported: true };
    if (!held.ready) return null;
    const verdict = await held.verify(code);
    // A text the verifier cannot read would only be refused when sent: shown, not queued.
    if (verdict.reason === "MALFORMED") return { verdict, asOfMs: held.asOfMs };
    const scan = { code, terminal: config.terminal, city: config.city, at_ms: Math.round(verifierClock() * 1000) };
    if (config.venue) scan.venue = config.venue;
    held.enqueue(scan);
    return { verdict, asOfMs: held.asOfMs };
  }

  async function check(code) {
    if (!config) { count += 1; show({ state: "error", reason: "NOT_CONFIGURED" }); return; }
    const item = { code, terminal: config.terminal, city: config.city };
    if (config.venue) item.venue = config.venue;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), config.deadline);
    try {
      const { result, serverDate } = await CE.api("/v1/verify", config.key, { json: item, signal: deadline.signal });
      clearTimeout(timer);
      learnOffset(serverDate);
      offline = false;
      count += 1;
      show({ state: "verdict", verdict: result });
      cue(result);
      sendQueued();
      return;
    } catch (err) {
      clearTimeout(timer);
      // No answer in time, no network, or a verifier that failed: check it here. Any other
      // answer (a refused key, too many scans) is the verifier's word and shown as it is.
      const unanswered = err.status === 0 || err.status >= 500;
      const checked = unanswered ? await checkOffline(code).catch(() => null) : null;
      count += 1;
      if (checked && checked.unsupported) {
        offline = true;
        show({ state: "error", reason: "OFFLINE_UNSUPPORTED", unchecked: true });
        cue({ valid: false, colour: null, reason: "OFFLINE_UNSUPPORTED" });
      } else if (checked) {
        offline = true;
        show({ state: "verdict", verdict: checked.verdict, offline: checked });
        cue(checked.verdict, checked.asOfMs);
      } else {
        show({ state: "error", reason: err.reason || "NETWORK" });
        cue({ valid: false, colour: null, reason: err.reason || "NETWORK" });
      }
    }
    await network();
  }

  /** Refresh the lists now and then as they say; retry sending while scans wait. */
  function scheduleRefresh(delayS) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      let next = RETRY_MS / 1000;
      try {
        const held = await desk;
        if (held) next = await held.refresh();
      } catch (err) {
        // Unreachable: keep the lists held and try again soon.
      }
      sendQueued();
      scheduleRefresh(next);
    }, delayS * 1000);
  }

  /** Load the offline state of the configuration and fetch the lists at once. */
  function startOffline() {
    desk = import("/static/terminal-offline.js")
      .then((module) => new module.OfflineDesk(config.anchor, verifierClock).load())
      .catch((err) => { console.error("offline checks unavailable", err); return null; });
    desk.then(network);
    scheduleRefresh(0);
  }

  function refocus() {
    if ($("setup").hidden) $("scan").focus();
  }

  function configure(given) {
    const city = Number(given.city);
    const deadline = Number(given.deadline);
    config = {
      key: String(given.key || ""),
      terminal: String(given.terminal || "terminal"),
      venue: String(given.venue || ""),
      city: Number.isInteger(city) ? city : 0,
      anchor: String(given.anchor || ""),
      deadline: Number.isInteger(deadline) && deadline >= 100 && deadline <= 30_000 ? deadline : DEADLINE_MS,
    };
    // A terminal is a dedicated device: its settings survive a restart.
    localStorage.setItem("ce-terminal", JSON.stringify(config));
    $("setup").hidden = true;
    startOffline();
    place();
    show({ state: "idle" });
    refocus();
  }

  function place() {
    $("place").textContent = config ? `${CE.cityName(config.city)} ${config.venue}`.trim() : "";
  }

  /** What the page holds for offline checks, for integrators' status screens and tests. */
  async function offlineState() {
    const held = await desk;
    return {
      ready: Boolean(held && held.ready),
      asOfMs: held ? held.asOfMs : null,
      refused: held ? held.lastRefusal : null,
      ...(held ? held.queued() : { waiting: 0, dropped: 0, refused: 0, expired: 0 }),
    };
  }

  /** Fetch the lists now (after a revocation that must reach this terminal at once). */
  async function refreshLists() {
    const held = await desk;
    if (held) await held.refresh();
    return offlineState();
  }

  // `clock`: a function giving seconds since the epoch as the device's clock (null: the
  // device's own). Offline checks and scan times use it corrected by the offset learnt from the
  // verifier's Date header. Tests set it; a terminal never needs to.
  window.codeEngineTerminal = { configure, offlineState, refreshLists, onVerdict: null, clock: null };

  document.addEventListener("DOMContentLoaded", () => {
    CE.languageToggle($("lang"));
    document.addEventListener("codeengine:language", () => { place(); network(); if (shown) show(shown); });
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.register("/pages/terminal-worker.js", { scope: "/pages/" })
        .catch((err) => console.error("no offline page", err));
    }
    CE.applyLanguage();
    $("scan-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const code = $("scan").value.trim();
      // Cleared at once: the next scan may already be typing.
      $("scan").value = "";
      refocus();
      if (!code) return;
      queue = queue.then(() => check(code));
    });
    $("scan").addEventListener("blur", () => setTimeout(refocus, 0));
    document.addEventListener("click", (event) => {
      if (!event.target.closest("#setup, .tools")) refocus();
    });
    $("settings").addEventListener("click", () => {
      $("setup").hidden = !$("setup").hidden;
      if (config) {
        $("set-terminal").value = config.terminal;
        $("set-venue").value = config.venue;
        $("set-city").value = String(config.city || "");
        $("set-anchor").value = config.anchor;
        $("set-deadline").value = String(config.deadline);
      }
      if (!$("setup").hidden) $("set-key").focus(); else refocus();
    });
    $("setup").addEventListener("submit", (event) => {
      event.preventDefault();
      configure({
        key: $("set-key").value || (config ? config.key : ""),
        terminal: $("set-terminal").value,
        venue: $("set-venue").value,
        city: $("set-city").value,
        anchor: $("set-anchor").value,
        deadline: $("set-deadline").value,
      });
      $("set-key").value = "";
    });
    const fragment = CE.takeFragment();
    const kept = localStorage.getItem("ce-terminal");
    if (fragment.key) configure(fragment);
    else if (kept) configure(JSON.parse(kept));
    else { $("setup").hidden = false; show({ state: "idle" }); }
    refocus();
  });
})();
