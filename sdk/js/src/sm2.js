// SM2 signature verification with SM3 (GB/T 32918.2, 7.1), the national suite of
// docs/code-format.md section 13, over the recommended curve of GB/T 32918.5.
//
// WebCrypto has no SM2, and the npm libraries that have it are CommonJS bundles that a page
// cannot import without a build step, so verification (public inputs only: no secret, hence no
// constant-time concern) is written here with BigInt from the standard and checked against its
// Annex A example and the format's vectors. This module never signs.

import { concat, fromBigInt, toBigInt } from './bytes.js';
import { sm3 } from './sm3.js';

const P = 0xfffffffeffffffffffffffffffffffffffffffff00000000ffffffffffffffffn;
const A = 0xfffffffeffffffffffffffffffffffffffffffff00000000fffffffffffffffcn;
const B = 0x28e9fa9e9d9f5e344d5a9e4bcf6509a7f39789f515ab8f92ddbcbd414d940e93n;
const N = 0xfffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123n;
const GX = 0x32c4ae2c1f1981195f9904466a39c9948fe30bbff2660be1715a4589334c74c7n;
const GY = 0xbc3736a2f4f6779c59bdcee36b692153d0a9877cc62a474002df32e52139f0a0n;

/** The signer ID every key of this format uses: `1234567812345678` (section 13.3). */
export const SM2_DEFAULT_ID = new TextEncoder().encode('1234567812345678');

const mod = (x, m = P) => {
  const r = x % m;
  return r < 0n ? r + m : r;
};

/** Whether (x, y) is a point of the curve with both coordinates below p. */
export function onCurve(x, y) {
  return x < P && y < P && mod(y * y) === mod(x * x * x + A * x + B);
}

/** Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA): a constant of each key. */
export function sm2Za(x, y, id = SM2_DEFAULT_ID) {
  const entl = id.length * 8;
  return sm3(
    concat(
      new Uint8Array([entl >> 8, entl & 0xff]),
      id,
      ...[A, B, GX, GY, x, y].map((v) => fromBigInt(v, 32)),
    ),
  );
}

/**
 * Whether `signature` (64 bytes, r || s) is the SM2 signature of `message` by the key (x, y),
 * given its `za`. Out-of-range r or s, a 64-byte signature that is anything else, or t = 0 is
 * simply false.
 */
export function sm2Verify(x, y, za, signature, message) {
  if (signature.length !== 64) return false;
  const r = toBigInt(signature.subarray(0, 32));
  const s = toBigInt(signature.subarray(32));
  if (r < 1n || r >= N || s < 1n || s >= N) return false;
  const t = mod(r + s, N);
  if (t === 0n) return false;
  const e = toBigInt(sm3(concat(za, message)));
  const point = toAffine(shamir(s, t, [x, y, 1n]));
  if (point === null) return false;
  return mod(e + point[0], N) === r;
}

/** The test hook for the standard's example: the digest e = SM3(Z_A || M). */
export function sm2Digest(za, message) {
  return sm3(concat(za, message));
}

// Jacobian coordinates (X, Y, Z) for x = X/Z^2, y = Y/Z^3; null is the point at infinity.

function double(p) {
  if (p === null || p[1] === 0n) return null;
  const [x, y, z] = p;
  // a = p - 3, so 3x^2 + a z^4 = 3 (x - z^2)(x + z^2).
  const delta = mod(z * z);
  const gamma = mod(y * y);
  const beta = mod(x * gamma);
  const alpha = mod(3n * (x - delta) * (x + delta));
  const x3 = mod(alpha * alpha - 8n * beta);
  const z3 = mod((y + z) * (y + z) - gamma - delta);
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma);
  return [x3, y3, z3];
}

function add(p, q) {
  if (p === null) return q;
  if (q === null) return p;
  const [x1, y1, z1] = p;
  const [x2, y2, z2] = q;
  const z1z1 = mod(z1 * z1);
  const z2z2 = mod(z2 * z2);
  const u1 = mod(x1 * z2z2);
  const u2 = mod(x2 * z1z1);
  const s1 = mod(y1 * z2 * z2z2);
  const s2 = mod(y2 * z1 * z1z1);
  if (u1 === u2) return s1 === s2 ? double(p) : null;
  const h = mod(u2 - u1);
  const r = mod(s2 - s1);
  const hh = mod(h * h);
  const hhh = mod(h * hh);
  const v = mod(u1 * hh);
  const x3 = mod(r * r - hhh - 2n * v);
  const y3 = mod(r * (v - x3) - s1 * hhh);
  const z3 = mod(h * z1 * z2);
  return [x3, y3, z3];
}

// s*G + t*Q with one pass over the bits of both scalars (Shamir's trick).
function shamir(s, t, q) {
  const g = [GX, GY, 1n];
  const gq = add(g, q);
  let acc = null;
  for (let bit = 255n; bit >= 0n; bit--) {
    acc = double(acc);
    const sb = (s >> bit) & 1n;
    const tb = (t >> bit) & 1n;
    if (sb && tb) acc = add(acc, gq);
    else if (sb) acc = add(acc, g);
    else if (tb) acc = add(acc, q);
  }
  return acc;
}

function toAffine(p) {
  if (p === null || p[2] === 0n) return null;
  const zInv = invert(p[2]);
  const zInv2 = mod(zInv * zInv);
  return [mod(p[0] * zInv2), mod(p[1] * zInv2 * zInv)];
}

function invert(a) {
  let [oldR, r] = [mod(a), P];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return mod(oldS);
}
