/*
 * 离线核验: what lets the terminal page go on checking codes when its verifier does not answer.
 *
 * The page keeps the signed trust list and revocation list (GET /v1/trust/signed,
 * /v1/revocations/signed) in localStorage, each pair accepted only once the JavaScript verifier
 * (/static/sdk/, the same modules as sdk/js/src) has checked it under the trust anchor the
 * terminal was configured with; a refused pair leaves the last good one in use. Only the
 * engine's own codes (CE1:) are checked offline and queued: anything else (an EU DCC, a SMART
 * Health Card, an alias card carrying a resident number) cannot be checked here and must not
 * wait on the device. A scan checked offline is queued in localStorage with an id of its own
 * and sent to POST /v1/scans/offline when the verifier answers again; the verifier logs each
 * id once, so a queue sent twice (a reload mid-send) is logged once.
 *
 * The queue is bounded by count (QUEUE_MAX), by size (QUEUE_MAX_CHARS) and by age
 * (QUEUE_MAX_AGE_S, the verifier's default for refusing a scan as too old), and survives a full
 * localStorage by dropping its oldest. Nothing leaves it unseen: each scan dropped is counted
 * by cause (dropped: no room; refused: the verifier refused the scan itself; expired: too old
 * to be sent), and the page shows the counts.
 */

import { ListRefused, OfflineVerifier, TrustList, b64urlDecode, b64urlEncode } from "/static/sdk/index.js";

const LISTS_KEY = "ce-terminal-lists";
const QUEUE_KEY = "ce-terminal-queue";
export const QUEUE_MAX = 2000;
// About 1.3 MB as localStorage counts it (UTF-16): room is left for the lists and settings in
// the 5 MB most browsers give an origin.
export const QUEUE_MAX_CHARS = 650_000;
// The verifier refuses a scan older than its offline_scan_max_age_s (three days by default):
// one older than that is dropped here, counted, rather than sent to be refused.
export const QUEUE_MAX_AGE_S = 3 * 86_400;
// The verifier's offline_batch_max by default; a smaller setting is met by halving (see send).
const SEND_CHUNK = 100;
/** The engine's own codes start so; nothing else can be checked offline. */
export const ENGINE_PREFIX = "CE1:";
const EMPTY_QUEUE = () => ({ items: [], dropped: 0, refused: 0, expired: 0 });
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

/** The queue as kept, its counts defaulted (a queue kept by an earlier release lacks some). */
function readQueue() {
  return { ...EMPTY_QUEUE(), ...readJson(QUEUE_KEY, {}) };
}

function isQuotaError(err) {
  return err instanceof DOMException && (err.name === "QuotaExceededError" || err.code === 22);
}

/**
 * Keep the queue; when localStorage is full, drop the oldest tenth (counted) until it fits. A
 * full store must not turn every later offline scan into an error.
 */
function writeQueue(queue) {
  for (;;) {
    try {
      localStorage.setItem(QUEUE_KEY, JSON.stringify(queue));
      return;
    } catch (err) {
      if (!isQuotaError(err) || queue.items.length === 0) throw err;
      const over = Math.max(1, Math.ceil(queue.items.length / 10));
      queue.items.splice(0, over);
      queue.dropped += over;
    }
  }
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
    this.chunk = SEND_CHUNK; // scans a send carries; halved when the verifier takes fewer
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

  /** Whether `code` is one the page can check offline: the engine's own. */
  static canCheck(code) {
    return code.startsWith(ENGINE_PREFIX);
  }

  /** Drop the scans too old to be logged (counted); the queue is changed in place. */
  expire(queue) {
    const oldest = (this.clock() - QUEUE_MAX_AGE_S) * 1000;
    const kept = queue.items.filter((item) => item.at_ms >= oldest);
    queue.expired += queue.items.length - kept.length;
    queue.items = kept;
  }

  /**
   * Queue a scan for the scan log. The oldest go first when the queue is over its count or its
   * size (counted as dropped), and scans too old to be logged go at once (counted as expired).
   */
  enqueue(scan) {
    const queue = readQueue();
    this.expire(queue);
    queue.items.push({ id: scanId(), ...scan });
    let chars = JSON.stringify(queue.items).length;
    while (queue.items.length > 1 && (queue.items.length > QUEUE_MAX || chars > QUEUE_MAX_CHARS)) {
      chars -= JSON.stringify(queue.items.shift()).length + 1;
      queue.dropped += 1;
    }
    writeQueue(queue);
  }

  /** How many scans wait, and how many were dropped, refused and expired (kept until cleared). */
  queued() {
    const { items, dropped, refused, expired } = readQueue();
    return { waiting: items.length, dropped, refused, expired };
  }

  /**
   * Send the queue with the terminal's key, a chunk at a time, and forget what the verifier
   * answered (logged or not: its answer is final). A 400 that names a scan (`scans[i]`) drops
   * that scan, counted as refused, so one bad scan cannot hold the queue. A 400 that names none
   * or a 413 halves the chunk and sends again at once (a verifier set to take fewer scans a
   * request), and a 400 for a chunk of one drops that scan (refused). A 429 halves the chunk for
   * the next try (a rate bucket smaller than the chunk). Any other failure stops the send: the
   * rest waits for the next try.
   */
  async send(key) {
    for (;;) {
      const queue = readQueue();
      const before = queue.items.length;
      this.expire(queue);
      if (queue.items.length !== before) writeQueue(queue);
      if (queue.items.length === 0) return;
      const chunk = queue.items.slice(0, this.chunk);
      const response = await fetch("/v1/scans/offline", {
        method: "POST",
        headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ scans: chunk }),
        cache: "no-store",
        credentials: "omit",
      });
      let answered;
      let refused = 0;
      if (response.ok) {
        answered = new Set((await response.json()).results.map((r) => r.id));
      } else if (response.status === 400) {
        const problem = await response.json().catch(() => ({}));
        const named = /^scans\[(\d+)\]/.exec(problem.detail || "");
        if (named && Number(named[1]) < chunk.length) {
          answered = new Set([chunk[Number(named[1])].id]);
        } else if (chunk.length > 1) {
          this.chunk = Math.ceil(chunk.length / 2);
          continue;
        } else {
          answered = new Set([chunk[0].id]);
        }
        refused = answered.size;
      } else if (response.status === 413 && chunk.length > 1) {
        this.chunk = Math.ceil(chunk.length / 2);
        continue;
      } else {
        // A 429 may mean a chunk larger than the terminal's whole rate bucket: smaller next time.
        if (response.status === 429) this.chunk = Math.max(1, Math.ceil(chunk.length / 2));
        throw new Error(`HTTP ${response.status}`);
      }
      // Read again: scans queued while this chunk was on its way stay queued.
      const now = readQueue();
      now.refused += refused;
      now.items = now.items.filter((item) => !answered.has(item.id));
      writeQueue(now);
    }
  }
}
