/* Shared by the three pages: language, city names, masking, API calls, configuration. */
"use strict";

const CE = (() => {
  const CITIES = {
    320100: ["南京", "Nanjing"], 320200: ["无锡", "Wuxi"], 320300: ["徐州", "Xuzhou"],
    320400: ["常州", "Changzhou"], 320500: ["苏州", "Suzhou"], 320600: ["南通", "Nantong"],
    320700: ["连云港", "Lianyungang"], 320800: ["淮安", "Huai'an"], 320900: ["盐城", "Yancheng"],
    321000: ["扬州", "Yangzhou"], 321100: ["镇江", "Zhenjiang"], 321200: ["泰州", "Taizhou"],
    321300: ["宿迁", "Suqian"],
  };
  const texts = { zh: {}, en: {} };
  let lang = localStorage.getItem("ce-lang") === "en" ? "en" : "zh";

  /** Add a page's texts: {key: [zh, en]}. */
  function addTexts(table) {
    for (const [key, [zh, en]] of Object.entries(table)) {
      texts.zh[key] = zh;
      texts.en[key] = en;
    }
  }

  /** The text of a key in the current language, with {name} placeholders filled. */
  function t(key, values) {
    let text = texts[lang][key] ?? key;
    for (const [name, value] of Object.entries(values || {})) {
      text = text.replaceAll(`{${name}}`, String(value));
    }
    return text;
  }

  /** Re-render every [data-i18n] element, and tell the page to redraw what it built. */
  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const el of document.querySelectorAll("[data-i18n]")) {
      el.textContent = t(el.dataset.i18n);
    }
    for (const el of document.querySelectorAll("[data-i18n-label]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    }
    document.dispatchEvent(new CustomEvent("codeengine:language", { detail: { lang } }));
  }

  function setLanguage(next) {
    lang = next === "en" ? "en" : "zh";
    localStorage.setItem("ce-lang", lang);
    applyLanguage();
  }

  /** Wire a button that switches between Chinese and English. */
  function languageToggle(button) {
    button.addEventListener("click", () => setLanguage(lang === "zh" ? "en" : "zh"));
  }

  function cityName(code) {
    const names = CITIES[code];
    if (!names) return String(code ?? "");
    return lang === "zh" ? names[0] : names[1];
  }

  /**
   * A name as the page may show it: a person keeps only the last character (**三), an
   * enterprise its first two and last two (南京****公司). Whatever the host passes is masked
   * again here, so a host that forgot cannot make the page show a full name.
   */
  function mask(name, kind) {
    const chars = Array.from(String(name || "").trim());
    if (chars.length === 0) return "";
    if (kind === "enterprise") {
      if (chars.length <= 4) return chars[0] + "*".repeat(chars.length - 1);
      return chars.slice(0, 2).join("") + "****" + chars.slice(-2).join("");
    }
    if (chars.length === 1) return "*";
    return "*".repeat(Math.min(chars.length - 1, 2)) + chars[chars.length - 1];
  }

  /** The problem an API answer carries, or a network failure, as {status, reason}. */
  class ApiError extends Error {
    constructor(status, reason, detail) {
      super(detail || reason);
      this.status = status;
      this.reason = reason;
    }
  }

  /**
   * Call the service's own API with a bearer key; JSON in, JSON (or a Blob) out. An aborted
   * call (options.signal) fails as NETWORK, as a call the network lost.
   */
  async function api(path, key, options = {}) {
    const headers = { Accept: options.blob ? "image/png" : "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    let body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(path, {
        method: options.method || (body ? "POST" : "GET"),
        headers,
        body,
        cache: "no-store",
        credentials: "omit",
        signal: options.signal,
      });
    } catch (err) {
      throw new ApiError(0, "NETWORK", String(err));
    }
    const date = Date.parse(response.headers.get("Date") || "");
    if (!response.ok) {
      let problem = {};
      try { problem = await response.json(); } catch (err) { problem = {}; }
      throw new ApiError(response.status, problem.reason || `HTTP_${response.status}`, problem.detail);
    }
    const result = options.blob ? await response.blob() : await response.json();
    return { result, serverDate: Number.isNaN(date) ? null : date };
  }

  /**
   * Settings handed over in the URL fragment (#key=...&subject=...). A fragment never reaches
   * a server or its logs; it is removed from the address at once so it stays out of history
   * and screenshots of the address bar.
   */
  function takeFragment() {
    const hash = location.hash.startsWith("#") ? location.hash.slice(1) : "";
    if (!hash) return {};
    history.replaceState(null, "", location.pathname + location.search);
    return Object.fromEntries(new URLSearchParams(hash));
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  /** A wall-clock time as HH:MM:SS (local time of the device). */
  function clock(ms) {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function dateText(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  }

  /** Build an element: el("td", {class: "x"}, "text", child). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(name, value);
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  return {
    CITIES, ApiError, addTexts, t, applyLanguage, setLanguage, languageToggle, cityName, mask,
    api, takeFragment, clock, dateText, el,
    get lang() { return lang; },
  };
})();
