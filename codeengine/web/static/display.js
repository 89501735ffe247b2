/*
 * 亮码: the display page. The host app hands it what it needs without a URL that reaches a
 * server: window.codeEngineDisplay.start({subject, key, name, kind}) from the web view, or the
 * URL fragment (#subject=...&key=...), which browsers never send. The page then calls the
 * issuer's display endpoint with the display key, like the app backend would, and shows the
 * QR image of the same token. It refreshes at the token's half-life, and shows grey with the
 * reason whenever it cannot stand behind a colour (no status, an error, an expired code).
 */
"use strict";

(() => {
  CE.addTexts({
    "title.health": ["健康码", "Health code"],
    "title.person_service": ["服务码", "Service code"],
    "title.enterprise_service": ["企业服务码", "Enterprise service code"],
    "title.fused": ["健康码 · 服务码", "Health and service code"],
    elder: ["长辈模式", "Large text"],
    lang: ["English", "中文"],
    loading: ["正在加载", "Loading"],
    refresh: ["刷新", "Refresh"],
    note: ["动态码：时间与倒计时实时变化，截图无效。", "A live code: the clock and countdown move; a screenshot is not valid."],
    "word.green": ["绿码", "GREEN"],
    "word.yellow": ["黄码", "YELLOW"],
    "word.red": ["红码", "RED"],
    "word.grey": ["灰码", "GREY"],
    "word.unknown": ["无法确认", "UNCONFIRMED"],
    "why.grey": ["暂无可确认的健康状态", "No health status the engine can vouch for"],
    "why.NETWORK": ["无法连接服务，请检查网络", "Cannot reach the service: check the network"],
    "why.UNAUTHORIZED": ["授权已失效，请重新打开", "Authorisation expired: open the page again"],
    "why.FORBIDDEN": ["无亮码权限", "Not allowed to display codes"],
    "why.UNKNOWN_SUBJECT": ["未找到此码，请重新申领", "No such code: apply again"],
    "why.RATE_LIMITED": ["请求过于频繁，请稍候", "Too many requests: please wait"],
    "why.STORE_UNAVAILABLE": ["服务暂不可用，请稍候", "Service unavailable: please wait"],
    "why.KEYRING": ["签名服务暂不可用", "Signing is unavailable"],
    "why.EXPIRED": ["码已过期，无法连接服务刷新", "The code expired and could not be refreshed"],
    "why.NOT_CONFIGURED": ["页面未获得亮码所需信息", "The page was not given what it needs"],
    "why.OTHER": ["暂时无法确认状态", "The status cannot be confirmed now"],
    "why.retrying": ["正在重新连接…", "Reconnecting…"],
    validFor: ["有效期剩余 {s} 秒", "Valid for {s} s"],
    expired: ["已过期", "Expired"],
  });

  const RETRY_MS = [2000, 4000, 8000, 15000];
  const FATAL = new Set(["UNAUTHORIZED", "FORBIDDEN", "UNKNOWN_SUBJECT", "NOT_CONFIGURED"]);
  const $ = (id) => document.getElementById(id);
  let config = null;
  let code = null; // the last displayed code: {token, colour, expires_at, refresh_at, kind, city}
  let offsetMs = 0; // server clock minus device clock, from the Date header
  let timer = 0;
  let failures = 0;
  let problem = null; // the reason the page cannot vouch for a colour, or null
  let imageUrl = "";

  const now = () => Date.now() + offsetMs;

  function render() {
    const card = $("card");
    const expired = code !== null && now() >= code.expires_at * 1000;
    const reason = expired ? "EXPIRED" : (code === null ? problem : null);
    const colour = reason ? "unknown" : (code ? code.colour : "");
    card.className = `card c-${reason ? "grey" : (colour || "none")}`;
    card.dataset.colour = reason ? "grey" : colour;
    card.dataset.state = reason ? "error" : (code ? (colour === "grey" ? "grey" : "ok") : "loading");
    $("word").textContent = colour ? CE.t(`word.${colour}`) : CE.t("loading");
    let why = "";
    if (reason) why = CE.t(`why.${reason}`) === `why.${reason}` ? CE.t("why.OTHER") : CE.t(`why.${reason}`);
    else if (colour === "grey") why = CE.t("why.grey");
    else if (problem) why = CE.t("why.retrying");
    $("why").textContent = why;
    // A QR the engine no longer stands behind is not shown at all.
    $("qr").hidden = Boolean(reason) || !imageUrl;
    $("title").textContent = CE.t(`title.${code ? code.kind : "health"}`);
    $("name").textContent = config ? CE.mask(config.name, config.kind) : "";
    $("city").textContent = code ? CE.cityName(code.city) : "";
    tick();
  }

  function tick() {
    const at = now();
    $("clock").textContent = `${CE.dateText(at)} ${CE.clock(at)}`;
    $("clock").setAttribute("datetime", new Date(at).toISOString());
    if (!code) { $("countdown").textContent = ""; return; }
    const left = Math.ceil((code.expires_at * 1000 - at) / 1000);
    if (left <= 0) {
      $("countdown").textContent = CE.t("expired");
      if ($("card").dataset.state !== "error") render();
    } else {
      $("countdown").textContent = CE.t("validFor", { s: left });
    }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(load, Math.max(500, ms));
  }

  async function load() {
    clearTimeout(timer);
    if (!config || !config.subject || !config.key) {
      problem = "NOT_CONFIGURED";
      render();
      return;
    }
    const path = `/v1/subjects/${encodeURIComponent(config.subject)}/code`;
    const query = config.code && config.code !== "own" ? `kind=${encodeURIComponent(config.code)}` : "";
    try {
      const answer = await CE.api(query ? `${path}?${query}` : path, config.key);
      if (answer.serverDate !== null) offsetMs = answer.serverDate - Date.now();
      const image = await CE.api(`${path}?${query ? query + "&" : ""}format=png`, config.key, { blob: true });
      const fresh = answer.result;
      const previous = imageUrl;
      imageUrl = URL.createObjectURL(image.result);
      $("qr").src = imageUrl;
      if (previous) URL.revokeObjectURL(previous);
      code = fresh;
      problem = null;
      failures = 0;
      $("card").dataset.issuedAt = String(fresh.issued_at);
      render();
      document.dispatchEvent(new CustomEvent("codeengine:displayed", {
        detail: { colour: fresh.colour, issued_at: fresh.issued_at, expires_at: fresh.expires_at },
      }));
      // Refresh at half-life, spread over a second so that many phones do not ask at once.
      schedule(fresh.refresh_at * 1000 - now() + Math.random() * 1000);
    } catch (err) {
      problem = err.reason || "OTHER";
      if (FATAL.has(problem)) {
        code = null;
      }
      render();
      const wait = FATAL.has(problem) ? 30000 : RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
      failures += 1;
      schedule(wait);
    }
  }

  function setElder(on) {
    document.body.classList.toggle("elder", on);
    $("elder").setAttribute("aria-pressed", String(on));
    localStorage.setItem("ce-elder", on ? "1" : "0");
  }

  /** Start (or restart) the page with what the host app obtained for it. */
  function start(given) {
    config = {
      subject: String(given.subject || ""),
      key: String(given.key || ""),
      name: String(given.name || ""),
      kind: given.kind === "enterprise" ? "enterprise" : "person",
      code: String(given.code || "own"),
    };
    // Kept for a reload of this tab only; closing the web view forgets it.
    sessionStorage.setItem("ce-display", JSON.stringify(config));
    if (given.lang) CE.setLanguage(given.lang);
    if (given.elder !== undefined) setElder(given.elder === true || given.elder === "1");
    code = null;
    imageUrl = "";
    load();
  }

  window.codeEngineDisplay = { start, refresh: load };

  document.addEventListener("DOMContentLoaded", () => {
    CE.languageToggle($("lang"));
    $("elder").addEventListener("click", () => setElder(!document.body.classList.contains("elder")));
    $("refresh").addEventListener("click", load);
    document.addEventListener("codeengine:language", render);
    document.addEventListener("visibilitychange", () => {
      // Back in the foreground: show a fresh code at once rather than a stale one.
      if (document.visibilityState === "visible" && config) load();
    });
    setElder(localStorage.getItem("ce-elder") === "1");
    CE.applyLanguage();
    setInterval(tick, 250);
    // A web view that reuses the page hands over a new subject in a new fragment.
    window.addEventListener("hashchange", () => {
      const next = CE.takeFragment();
      if (next.subject) start(next);
    });
    const fragment = CE.takeFragment();
    const kept = sessionStorage.getItem("ce-display");
    if (fragment.subject) start(fragment);
    else if (kept) start(JSON.parse(kept));
    else {
      render();
      // A host that calls start() does so at once; after a moment, say what is missing.
      setTimeout(() => { if (!config) { problem = "NOT_CONFIGURED"; render(); } }, 3000);
    }
  });
})();
