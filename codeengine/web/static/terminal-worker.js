/*
 * The terminal page's service worker: after the first visit the page, its styles and scripts
 * and the JavaScript verifier's modules load with no network, so a terminal restarted during
 * an outage still checks codes. The verifier serves this file with a first line that sets
 * self.CE_RELEASE (the release and a digest of the files) and self.CE_KEEP (what to keep);
 * the cache is named by the release, so a new release installs a new worker that drops the
 * old cache. The API (/v1/...) is never cached: verdicts and lists come from the page itself.
 */
"use strict";

const CACHE_PREFIX = "ce-terminal-";
const CACHE = CACHE_PREFIX + self.CE_RELEASE;
const KEPT = new Set(self.CE_KEEP);
// A network that hangs instead of refusing must not hold the page: past this, the copy kept.
const NETWORK_MS = 3000;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => Promise.all([...KEPT].map(async (url) => {
        // Each file checked as networkFirst checks it: a release is installed whole or not at
        // all, never with an error page kept in place of one of its files.
        const response = await fetch(new Request(url, { cache: "reload" }));
        if (!isTheFile(url, response)) throw new Error(`${url}: not the file (HTTP ${response.status})`);
        await cache.put(url, response);
      })))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((name) => name.startsWith(CACHE_PREFIX) && name !== CACHE)
          .map((name) => caches.delete(name)),
      ))
      .then(() => self.clients.claim()),
  );
});

/** The media type a kept path must be served as: its extension's, or a page's. */
function expectedType(path) {
  if (path.endsWith(".js")) return "text/javascript";
  if (path.endsWith(".css")) return "text/css";
  return "text/html";
}

/**
 * Whether an answer is the file itself: a 2xx, not redirected, of the file's media type. A
 * gateway's error page, a captive portal's login page or a redirect to one is none of these,
 * and must neither replace the kept copy nor be served in its place.
 */
function isTheFile(path, response) {
  const type = (response.headers.get("Content-Type") || "").split(";")[0].trim().toLowerCase();
  return response.ok && !response.redirected && response.type !== "opaqueredirect"
    && type === expectedType(path);
}

/**
 * The network's answer (kept for next time) when it is the file; otherwise, or when the
 * network fails or hangs, the kept copy. Behind a gateway a verifier that is down answers 502,
 * 503 or 504 rather than failing the connection: that must not stop the page from loading.
 * With no kept copy the network's answer is passed on as it is.
 */
async function networkFirst(path) {
  const cache = await caches.open(CACHE);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_MS);
  try {
    // By path, not the request: a navigation's request cannot be fetched with options.
    const response = await fetch(path, { signal: controller.signal });
    if (isTheFile(path, response)) {
      await cache.put(path, response.clone());
      return response;
    }
    return (await cache.match(path)) || response;
  } catch (err) {
    const kept = await cache.match(path);
    if (kept) return kept;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!KEPT.has(url.pathname)) return;
  event.respondWith(networkFirst(url.pathname));
});
