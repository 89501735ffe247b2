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
      .then((cache) => cache.addAll([...KEPT].map((url) => new Request(url, { cache: "reload" }))))
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

/** The network's answer (kept for next time), or the kept copy when the network fails. */
async function networkFirst(path) {
  const cache = await caches.open(CACHE);
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), NETWORK_MS);
  try {
    // By path, not the request: a navigation's request cannot be fetched with options.
    const response = await fetch(path, { signal: controller.signal });
    if (response.ok) await cache.put(path, response.clone());
    return response;
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
