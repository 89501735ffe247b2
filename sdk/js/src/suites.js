// The signing suites a verifier accepts (docs/code-format.md sections 3.2, 6, 7 and 13): for
// each, its COSE and JOSE labels, its JWK members, and how to verify with one of its keys.
// Ed25519 and ES256 go through WebCrypto (Node 20, Chromium); SM2 through ./sm2.js.

import { b64urlDecode, concat, toBigInt } from './bytes.js';
import { KeyringError } from './errors.js';
import { onCurve as sm2OnCurve, sm2Verify, sm2Za } from './sm2.js';

const subtle = globalThis.crypto.subtle;

// P-256 (FIPS 186-5): the field prime, b (a = p - 3), and the low-S bound (n - 1) / 2.
const P256_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const P256_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const P256_HALF_N = 0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8n;

function p256OnCurve(x, y) {
  const m = (v) => ((v % P256_P) + P256_P) % P256_P;
  return x < P256_P && y < P256_P && m(y * y) === m(x * x * x - 3n * x + P256_B);
}

function member(jwk, name) {
  const value = jwk[name];
  if (typeof value !== 'string') throw new KeyringError(`JWK member '${name}' must be a string`);
  let bytes;
  try {
    bytes = b64urlDecode(value);
  } catch {
    throw new KeyringError(`JWK member '${name}' is not unpadded base64url`);
  }
  if (bytes.length !== 32) throw new KeyringError(`JWK member '${name}' must encode 32 bytes`);
  return bytes;
}

function checkKtyCrv(jwk, kty, crv) {
  for (const [name, value] of [['kty', kty], ['crv', crv]]) {
    if (jwk[name] !== value) {
      throw new KeyringError(`JWK member '${name}' must be '${value}' for this algorithm`);
    }
  }
}

/**
 * A suite: `cose` and `jose` labels, the JWK `members` of its key (the RFC 7638 thumbprint
 * input), and `load(jwk)`, which checks the key and resolves to `verify(signature, message)`,
 * itself resolving to whether the signature is valid.
 */
export const ED25519 = Object.freeze({
  cose: -8,
  jose: 'EdDSA',
  members: ['crv', 'kty', 'x'],
  async load(jwk) {
    checkKtyCrv(jwk, 'OKP', 'Ed25519');
    const key = await subtle.importKey('raw', member(jwk, 'x'), { name: 'Ed25519' }, false, [
      'verify',
    ]);
    return async (signature, message) =>
      signature.length === 64 && subtle.verify({ name: 'Ed25519' }, key, signature, message);
  },
});

export const ES256 = Object.freeze({
  cose: -7,
  jose: 'ES256',
  members: ['crv', 'kty', 'x', 'y'],
  async load(jwk) {
    checkKtyCrv(jwk, 'EC', 'P-256');
    const x = member(jwk, 'x');
    const y = member(jwk, 'y');
    if (!p256OnCurve(toBigInt(x), toBigInt(y))) {
      throw new KeyringError("JWK members 'x' and 'y' are not a point on P-256");
    }
    const point = concat(new Uint8Array([4]), x, y);
    const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
    const key = await subtle.importKey('raw', point, algorithm, false, ['verify']);
    // Raw r || s, as WebCrypto takes it; a high s is the twin of a valid signature and is
    // refused before any verification (section 3.2, low-S).
    return async (signature, message) =>
      signature.length === 64 &&
      toBigInt(signature.subarray(32)) <= P256_HALF_N &&
      subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, signature, message);
  },
});

export const SM2SM3 = Object.freeze({
  cose: -65537,
  jose: 'SM2SM3',
  members: ['crv', 'kty', 'x', 'y'],
  async load(jwk) {
    checkKtyCrv(jwk, 'EC', 'SM2');
    const x = toBigInt(member(jwk, 'x'));
    const y = toBigInt(member(jwk, 'y'));
    if (!sm2OnCurve(x, y)) throw new KeyringError("JWK members 'x' and 'y' are not a point on SM2");
    const za = sm2Za(x, y);
    return async (signature, message) => sm2Verify(x, y, za, signature, message);
  },
});

/** The suites a verifier accepts unless told otherwise: all three, as the Python SDK. */
export const DEFAULT_SUITES = Object.freeze([ED25519, ES256, SM2SM3]);
