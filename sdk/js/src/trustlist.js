// The trust list (docs/code-format.md section 7): the JWKS of the keys a verifier believes,
// read strictly, because a lenient reader here would decide which signatures a terminal
// believes. Every problem is a KeyringError naming it.

import { b64urlDecode, b64urlEncode, bytesEqual, toHex } from './bytes.js';
import { KeyringError, Reason, refuse } from './errors.js';
import { parseStrictJSON } from './json.js';
import { DEFAULT_SUITES } from './suites.js';

const KID_BYTES = 8;
const META_MEMBERS = ['kid', 'alg', 'use', 'nbf', 'exp'];
const MAX_DOCUMENT_CHARS = 1_000_000;

/** The 8-byte key id of a JWK: the head of its RFC 7638 SHA-256 thumbprint (section 6). */
export async function keyId(jwk, suite) {
  const input = {};
  for (const name of suite.members) input[name] = jwk[name];
  const text = JSON.stringify(input);
  const digest = await globalThis.crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return new Uint8Array(digest, 0, KID_BYTES);
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function timeMember(jwk, name) {
  // The strict reader gives plain numbers only for safe integer literals.
  const value = jwk[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new KeyringError(`JWK member '${name}' must be an integer`);
  }
  return value;
}

/** One trusted key: its id, suite, validity, and `verify(signature, message)`. */
export class TrustedKey {
  constructor(kid, suite, notBefore, notAfter, verify) {
    this.kid = kid;
    this.suite = suite;
    this.alg = suite.cose;
    this.notBefore = notBefore;
    this.notAfter = notAfter;
    this.verify = verify;
    Object.freeze(this);
  }

  /** The kid as the trust list writes it (unpadded base64url). */
  get kidText() {
    return b64urlEncode(this.kid);
  }

  /** Whether the key verifies at `now`: `nbf <= now <= exp`, both ends included, no skew. */
  validAt(now) {
    return this.notBefore <= now && now <= this.notAfter;
  }
}

/** Read one trust-list JWK strictly (section 7). */
export async function parseJwk(jwk, suites = DEFAULT_SUITES) {
  if (!isObject(jwk)) throw new KeyringError('a JWK must be a JSON object');
  if (typeof jwk.alg !== 'string') throw new KeyringError("JWK member 'alg' must be a string");
  const suite = suites.find((s) => s.jose === jwk.alg);
  if (suite === undefined) throw new KeyringError("JWK member 'alg' names no accepted suite");
  if (jwk.use !== 'sig') throw new KeyringError("JWK member 'use' must be 'sig'");
  if (Object.hasOwn(jwk, 'd')) {
    throw new KeyringError("a trust-list JWK must not carry the private member 'd'");
  }
  const verify = await suite.load(jwk);
  const known = new Set([...suite.members, ...META_MEMBERS]);
  if (Object.keys(jwk).some((name) => !known.has(name))) {
    throw new KeyringError('JWK has unknown members');
  }
  if (typeof jwk.kid !== 'string') throw new KeyringError("JWK member 'kid' must be a string");
  let kid;
  try {
    kid = b64urlDecode(jwk.kid);
  } catch {
    throw new KeyringError("JWK member 'kid' is not unpadded base64url");
  }
  if (!bytesEqual(kid, await keyId(jwk, suite))) {
    throw new KeyringError("JWK member 'kid' is not the thumbprint of the key it carries");
  }
  const notBefore = timeMember(jwk, 'nbf');
  const notAfter = timeMember(jwk, 'exp');
  if (notBefore > notAfter) throw new KeyringError("a key's nbf is after its exp");
  return new TrustedKey(kid, suite, notBefore, notAfter, verify);
}

/** The public keys a verifier trusts, each with its validity, looked up by kid. */
export class TrustList {
  constructor(keys) {
    this.keys = Object.freeze([...keys]);
    this._byKid = new Map();
    for (const key of this.keys) {
      const id = toHex(key.kid);
      if (this._byKid.has(id)) throw new KeyringError('a key id appears twice in the trust list');
      this._byKid.set(id, key);
    }
    Object.freeze(this);
  }

  /**
   * Read a JWKS: JSON text (bytes or a string, read by the strict reader: no repeated names,
   * no NaN, no `1.0` for a time) or an object already parsed. Options: `suites`.
   */
  static async from(document, { suites = DEFAULT_SUITES } = {}) {
    let parsed = document;
    if (document instanceof Uint8Array) {
      try {
        parsed = new TextDecoder('utf-8', { fatal: true }).decode(document);
      } catch {
        throw new KeyringError('the trust list is not UTF-8');
      }
    }
    if (typeof parsed === 'string') {
      if (parsed.length > MAX_DOCUMENT_CHARS) throw new KeyringError('the trust list is too large');
      try {
        parsed = parseStrictJSON(parsed);
      } catch (error) {
        throw new KeyringError(`the trust list is not valid JSON (${error.message})`);
      }
    }
    if (!isObject(parsed)) throw new KeyringError('a JWKS must be a JSON object');
    if (Object.keys(parsed).join() !== 'keys') {
      throw new KeyringError("a JWKS must have exactly the member 'keys'");
    }
    if (!Array.isArray(parsed.keys)) throw new KeyringError("JWKS member 'keys' must be an array");
    const keys = [];
    for (const [index, jwk] of parsed.keys.entries()) {
      try {
        keys.push(await parseJwk(jwk, suites));
      } catch (error) {
        if (!(error instanceof KeyringError)) throw error;
        throw new KeyringError(`keys[${index}]: ${error.message}`);
      }
    }
    return new TrustList(keys);
  }

  get size() {
    return this.keys.length;
  }

  /** The key with this id (bytes), whatever its validity, or undefined. */
  get(kid) {
    return this._byKid.get(toHex(kid));
  }

  /** The key with this id if it is valid at `now`; VerificationError UNKNOWN_KID otherwise. */
  keyAt(kid, now) {
    const key = this._byKid.get(toHex(kid));
    if (key === undefined) throw refuse(Reason.UNKNOWN_KID, 'the key id is not in the trust list');
    if (!key.validAt(now)) throw refuse(Reason.UNKNOWN_KID, 'the key is not valid at this time');
    return key;
  }
}
