/*
 * 离线核验: what lets the terminal page go on checking codes when its verifier does not answer.
 *
 * The page keeps the signed trust list and revocation list (GET /v1/trust/signed,
 * /v1/revocations/signed) in localStorage, each pair accepted only once the JavaScript verifier
 * (/static/sdk/, the same modules as sdk/js/src) has checked it under the trust anchor the
 * terminal was configured with; a refused pair leaves the last good one in use. A scan checked
 * offline is queued in localStorage (at most QUEUE_MAX, the oldest dropped and counted) with an
 * id of its own, and sent to POST /v1/scans/offline when the verifier answers again; the
 * verifier logs each id once, so a queue sent twice (a reload mid-send) is logged once.
 */

import { ListRefused, OfflineVerifier, TrustList, b64urlDecode, b64urlEncode } from "/static/sdk/index.js";

const LISTS_KEY = "ce-terminal-lists";
const QUEUE_KEY = "ce-terminal-queue";
export const QUEUE_MAX = 2000;
const SEND_CHUNK = 100;
// The lists' max-age is the verifier's reading interval (a second for revocations); a
// terminal asks at most this often, and at least this often, whatever they say.
const REFRESH_MIN_S = 30;
const REFRESH_MAX_S = 3600;

function maxAgeS(response) {
  const found = /max-age=(\d+)/.exec(response.headers.get("Cache-Control") || "");
  return found ? Number(found[1]) : REFRESH_MIN_S;
}

function scanId() {
  return b64urlEncode(crypto.getRandomValues(new Uint8Array(16)));
}

function readJson(key, fallback) {
  try {
    const text = localStorage.getItem(key);
    return text ? JSON.parse(text) : fallback;
  } catch (err) {
    return fallback;
  }
}

/**
 * The terminal's offline state: its trust anchor, the last good signed lists, the queue.
 * `clock()` gives seconds since the epoch (the page's, or a test's).
 */
export class OfflineDesk {
  constructor(anchorText, clock) {
    this.anchorText = anchorText;
    this.clock = clock;
    this.anchors = null;
    this.sdk = null;
    this.etags = {};
    this.lastRefusal = null;
  }

  /** Read the anchor and the lists kept from an earlier visit (still checked again). */
  async load() {
    if (!this.anchorText) return this;
    try {
      this.anchors = await TrustList.from(this.anchorText);
    } catch (err) {
      this.lastRefusal = "ANCHOR";
      return this;
    }
    const kept = readJson(LISTS_KEY, null);
    if (kept && kept.anchor === this.anchorText) {
      try {
        const sdk = await OfflineVerifier.fromSigned(
          b64urlDecode(kept.trust), b64urlDecode(kept.revocations), this.anchors,
          { clock: () => this.clock() },
        );
        sdk.fetchedAt = kept.fetchedAt; // when they were last confirmed, not when read back
        this.sdk = sdk;
        this.etags = kept.etags || {};
      } catch (err) {
        this.lastRefusal = err instanceof ListRefused ? err.reason : "LIST_MALFORMED";
      }
    }
    return this;
  }

  /** Whether offline checks are possible: an anchor and a pair of lists accepted. */
  get ready() {
    return this.sdk !== null;
  }

  /** When the lists held were last confirmed by the verifier (ms), or null. */
  get asOfMs() {
    return this.sdk ? this.sdk.fetchedAt * 1000 : null;
  }

  async fetchList(path, name) {
    const headers = {};
    if (this.sdk && this.etags[name]) headers["If-None-Match"] = this.etags[name];
    const response = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
    if (response.status === 304) return { bytes: null, maxAge: maxAgeS(response) };
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    return { bytes, etag: response.headers.get("ETag"), maxAge: maxAgeS(response) };
  }

  /**
   * Fetch both lists and keep them if they pass; the seconds until the next refresh. A list
   * that fails to arrive or is refused leaves the held pair in use (until its own expiry).
   */
  async refresh() {
    if (!this.anchors) return REFRESH_MAX_S;
    const [trust, revocations] = await Promise.all([
      this.fetchList("/v1/trust/signed", "trust"),
      this.fetchList("/v1/revocations/signed", "revocations"),
    ]);
    const next = Math.min(REFRESH_MAX_S, Math.max(REFRESH_MIN_S, Math.min(trust.maxAge, revocations.maxAge)));
    const held = readJson(LISTS_KEY, null);
    const trustBytes = trust.bytes || (held && b64urlDecode(held.trust));
    const revocationBytes = revocations.bytes || (held && b64urlDecode(held.revocations));
    if (!trustBytes || !revocationBytes) throw new Error("no list held to compare a 304 with");
    try {
      if (this.sdk === null) {
        this.sdk = await OfflineVerifier.fromSigned(
          trustBytes, revocationBytes, this.anchors, { clock: () => this.clock() },
        );
      } else {
        await this.sdk.refresh(trustBytes, revocationBytes);
      }
    } catch (err) {
      if (!(err instanceof ListRefused)) throw err;
      this.lastRefusal = err.reason;
      return next;
    }
    this.lastRefusal = null;
    this.etags = {
      trust: trust.etag || this.etags.trust,
      revocations: revocations.etag || this.etags.revocations,
    };
    localStorage.setItem(LISTS_KEY, JSON.stringify({
      anchor: this.anchorText,
      trust: b64urlEncode(trustBytes),
      revocations: b64urlEncode(revocationBytes),
      fetchedAt: this.sdk.fetchedAt,
      etags: this.etags,
    }));
    return next;
  }

  /** The verdict of the JavaScript verifier against the lists held. */
  async verify(code) {
    return this.sdk.verify(code);
  }

  /** Queue a scan for the scan log; the oldest go first when the queue is full (counted). */
  enqueue(scan) {
    const queue = readJson(QUEUE_KEY, { items: [], dropped: 0 });
    queue.items.push({ id: scanId(), ...scan });
    const over = queue.items.length - QUEUE_MAX;
    if (over > 0) {
      queue.items.splice(0, over);
      queue.dropped += over;
    }
    localStorage.setItem(QUEUE_KEY, JSON.stringify(queue));
  }

  /** How many scans wait, and how many were dropped since the last send. */
  queued() {
    const queue = readJson(QUEUE_KEY, { items: [], dropped: 0 });
    return { waiting: queue.items.length, dropped: queue.dropped };
  }

  /**
   * Send the queue with the terminal's key, a chunk at a time, and forget what the verifier
   * answered (logged or not: its answer is final). Stops at the first failure; the rest waits.
   */
  async send(key) {
    for (;;) {
      const queue = readJson(QUEUE_KEY, { items: [], dropped: 0 });
      if (queue.items.length === 0) return;
      const chunk = queue.items.slice(0, SEND_CHUNK);
      const response = await fetch("/v1/scans/offline", {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ scans: chunk }),
        cache: "no-store",
        credentials: "omit",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const { results } = await response.json();
      const answered = new Set(results.map((r) => r.id));
      // Read again: scans queued while this chunk was on its way stay queued.
      const now = readJson(QUEUE_KEY, { items: [], dropped: 0 });
      now.items = now.items.filter((item) => !answered.has(item.id));
      if (now.items.length === 0) now.dropped = 0;
      localStorage.setItem(QUEUE_KEY, JSON.stringify(now));
    }
  }
}
