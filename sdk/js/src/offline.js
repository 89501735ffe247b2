// The terminal's offline verifier: the verdicts a terminal can reach alone from the trust list
// and revocation list it cached, as the Python SDK's OfflineVerifier gives them.

import { Reason } from './errors.js';
import { ListKind, verifyListAt } from './signedlist.js';
import { DEFAULT_SKEW_S, Revocations, offlineVerdictAt } from './verify.js';

/** How long a terminal may go on trusting lists fetched while it was online (one day). */
export const DEFAULT_MAX_AGE_S = 24 * 3600;

const systemClock = () => Date.now() / 1000;

/**
 * Verifies codes offline. Construct it with `OfflineVerifier.fromSigned` (the signed lists,
 * checked under the terminal's trust anchors: the way a terminal should run) or with
 * `new OfflineVerifier({trust, revocations, fetchedAt})` for lists it got otherwise. Past the
 * lists' maximum age, or a signed list's expiry, every answer is TRUST_LIST_STALE, because a
 * stale list may still trust a revoked key. `clock` returns seconds since the epoch.
 */
export class OfflineVerifier {
  constructor(options) {
    const {
      trust,
      revocations = new Revocations(),
      fetchedAt,
      maxAgeS = DEFAULT_MAX_AGE_S,
      skewS = DEFAULT_SKEW_S,
      clock = systemClock,
      anchors = null,
      signedTrust = null,
      signedRevocations = null,
    } = options;
    this.trust = trust;
    this.revocations = revocations;
    this.fetchedAt = fetchedAt;
    this.maxAgeS = maxAgeS;
    this.skewS = skewS;
    this.clock = clock;
    this.anchors = anchors;
    this.signedTrust = signedTrust;
    this.signedRevocations = signedRevocations;
  }

  /**
   * A verifier holding the signed lists (`/v1/trust/signed`, `/v1/revocations/signed`, as
   * bytes) once both pass section 12.3 under `anchors` (a TrustList of the trust anchors);
   * rejects with ListRefused otherwise.
   */
  static async fromSigned(trustDocument, revocationsDocument, anchors, options = {}) {
    const verifier = new OfflineVerifier({ ...options, trust: null, anchors, fetchedAt: 0 });
    await verifier.refresh(trustDocument, revocationsDocument);
    return verifier;
  }

  /**
   * Check a freshly fetched pair of signed lists and hold them from now on. ListRefused says
   * why a pair was refused (unsigned, another key, altered, expired, older than the lists
   * held); the lists held then stay in use until their own expiry.
   */
  async refresh(trustDocument, revocationsDocument) {
    const now = Math.floor(this.clock());
    const anchored = (held) => (held !== null && this.anchors.get(held.anchor) ? held : null);
    const trust = await verifyListAt(trustDocument, ListKind.TRUST, this.anchors, now, {
      held: anchored(this.signedTrust),
    });
    const revocations = await verifyListAt(
      revocationsDocument,
      ListKind.REVOCATIONS,
      this.anchors,
      now,
      { held: anchored(this.signedRevocations) },
    );
    this.trust = trust.trust;
    this.revocations = revocations.revocations;
    this.signedTrust = trust;
    this.signedRevocations = revocations;
    this.fetchedAt = now;
  }

  /** The last second the held lists may be used. */
  get validUntil() {
    let until = this.fetchedAt + this.maxAgeS;
    for (const signed of [this.signedTrust, this.signedRevocations]) {
      if (signed !== null) until = Math.min(until, signed.expiresAt);
    }
    return until;
  }

  /** Whether the held lists are past their maximum age or a signed list's expiry. */
  get stale() {
    return Math.floor(this.clock()) > this.validUntil;
  }

  /** The verdict for a scanned text (a scanner's trailing CR/LF is ignored). */
  async verify(text) {
    const now = Math.floor(this.clock());
    if (now > this.validUntil) {
      return Object.freeze({
        valid: false,
        reason: Reason.TRUST_LIST_STALE,
        colour: null,
        kind: null,
        city: null,
        checked_at: now,
        as_of: null,
        degraded: false,
      });
    }
    const scanned = typeof text === 'string' ? text.replace(/[\r\n]+$/, '') : text;
    return offlineVerdictAt(scanned, this.trust, this.revocations, now, this.skewS);
  }
}
