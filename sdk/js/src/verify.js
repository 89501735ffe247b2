// 验码: verifying a code (docs/code-format.md section 8), and the verdict an offline terminal
// gives from its cached trust list and revocation list. Pure: time is an argument.

import { b64urlEncode } from './bytes.js';
import { decode, sigStructure } from './code.js';
import { Reason, VerificationError, refuse } from './errors.js';
import { DEFAULT_SUITES } from './suites.js';

/** The reference default clock-skew allowance, in seconds (section 8). */
export const DEFAULT_SKEW_S = 30;

/** Revoked code ids (`cti`, 12 lower-case hex characters) and key ids (11 base64url). */
export class Revocations {
  constructor({ codes = [], keys = [] } = {}) {
    this.codes = new Set(codes);
    this.keys = new Set(keys);
    Object.freeze(this);
  }

  /** Whether a decoded code, or the key that signed it, is revoked. */
  revokes(decoded) {
    return this.codes.has(decoded.claims.cti) || this.keys.has(b64urlEncode(decoded.kid));
  }
}

const NO_REVOCATIONS = new Revocations();

/**
 * Verify a code's text against a trust list at `now` (integer seconds), in the order of
 * section 8: structure, accepted algorithm, key valid at `now`, the key's algorithm, the
 * signature, then the time window with `skewS`. Resolves to the claims; rejects with a
 * VerificationError whose `reason` is the step's code. Options: `skewS`, `suites`.
 */
export async function verifyAt(text, trust, now, options = {}) {
  const { skewS = DEFAULT_SKEW_S, suites = DEFAULT_SUITES } = options;
  const decoded = decode(text);
  if (!suites.some((suite) => suite.cose === decoded.alg)) {
    throw refuse(Reason.UNSUPPORTED_ALG, "the code's algorithm is not accepted here");
  }
  const key = trust.keyAt(decoded.kid, now);
  if (key.alg !== decoded.alg) {
    throw refuse(Reason.UNSUPPORTED_ALG, "the code's algorithm is not its key's algorithm");
  }
  await checkSignature(decoded, key);
  checkWindowAt(decoded.claims, now, skewS);
  return decoded.claims;
}

async function checkSignature(decoded, key) {
  let valid = false;
  try {
    valid = await key.verify(decoded.signature, sigStructure(decoded.protected, decoded.payload));
  } catch {
    valid = false;
  }
  if (!valid) throw refuse(Reason.BAD_SIGNATURE, 'the signature does not match the code');
}

/** Step 8: refuse a code expired, or issued in the future, beyond `skewS` seconds. */
export function checkWindowAt(claims, now, skewS = DEFAULT_SKEW_S) {
  if (now > claims.exp + skewS) throw refuse(Reason.EXPIRED, 'the code has expired');
  if (claims.iat > now + skewS) throw refuse(Reason.NOT_YET_VALID, 'the code is not valid yet');
}

/**
 * The offline verdict, as the Python SDK gives it (codeengine/code/verification.py,
 * offline_verdict_at): decode, revocation (of the code or its key), key valid at `now`, time
 * window, algorithm, signature. Never rejects: resolves to the API's verdict shape,
 * `{valid, reason, colour, kind, city, checked_at, as_of, degraded}`, with the colour the code
 * was signed with and `as_of` its issue time.
 */
export async function offlineVerdictAt(
  text,
  trust,
  revocations,
  now,
  skewS = DEFAULT_SKEW_S,
  options = {},
) {
  const { suites = DEFAULT_SUITES } = options;
  let decoded;
  try {
    decoded = decode(text);
  } catch (error) {
    return refusal(error, now, null);
  }
  const claims = decoded.claims;
  try {
    if ((revocations ?? NO_REVOCATIONS).revokes(decoded)) {
      throw refuse(Reason.REVOKED, 'the code or its key has been revoked');
    }
    const key = trust.keyAt(decoded.kid, now);
    checkWindowAt(claims, now, skewS);
    if (!suites.some((suite) => suite.cose === decoded.alg) || key.alg !== decoded.alg) {
      throw refuse(Reason.UNSUPPORTED_ALG, "the code's algorithm is not accepted or its key's");
    }
    await checkSignature(decoded, key);
  } catch (error) {
    return refusal(error, now, claims);
  }
  return verdict(true, Reason.VALID, now, claims, claims.colour, claims.iat);
}

function verdict(valid, reason, now, claims, colour, asOf) {
  return Object.freeze({
    valid,
    reason,
    colour,
    kind: claims?.kind ?? null,
    city: claims?.city ?? null,
    checked_at: now,
    as_of: asOf,
    degraded: false,
  });
}

/** The verdict of a refusal; what the code claims is echoed once it decoded. */
export function refusal(error, now, claims) {
  if (!(error instanceof VerificationError)) throw error;
  return verdict(false, error.reason, now, claims, null, null);
}
