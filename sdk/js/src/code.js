// The CE1 code (docs/code-format.md sections 2 to 5): `CE1:` + base45 of a tagged COSE_Sign1
// whose payload is a CWT claims set, all in the one deterministic CBOR encoding. Decoding is
// strict and total: any text either decodes or throws a VerificationError MALFORMED. The
// signature is not checked here (./verify.js does).

import { b45decode } from './base45.js';
import { b64urlEncode, concat, toHex } from './bytes.js';
import { Reason, refuse } from './errors.js';

export const PREFIX = 'CE1:';
/** Longer text is refused before any decoding (section 2; the longest code is ~230). */
export const MAX_TOKEN_CHARS = 512;
export const MAX_VERSION = 2 ** 32 - 1;

/** Code kinds (status index 0) by their wire number. */
export const KINDS = Object.freeze({
  1: 'health',
  2: 'person_service',
  3: 'enterprise_service',
  4: 'fused',
});
/** Colours (status index 2) by their wire number. */
export const COLOURS = Object.freeze({ 0: 'grey', 1: 'green', 2: 'yellow', 3: 'red' });
/** The province's thirteen cities: the wire's four-digit prefix of each six-digit code. */
export const CITY_PREFIXES = Object.freeze(Array.from({ length: 13 }, (_, i) => 3201 + i));

const SHORTEST = [24, 1 << 8, 1 << 16, 2 ** 32];
const SIG1_CONTEXT = new Uint8Array([0x84, 0x6a, ...new TextEncoder().encode('Signature1')]);

function malformed(detail) {
  return refuse(Reason.MALFORMED, detail);
}

/** A CBOR reader over the fixed layout: every head in its shortest form. */
export class Reader {
  constructor(bytes, fail = malformed) {
    this.buf = bytes;
    this.at = 0;
    this.fail = fail;
  }

  /** The argument of the head at the cursor, which must be of major type `major`. */
  argument(major, what) {
    const buf = this.buf;
    if (this.at >= buf.length) throw this.fail(`${what}: truncated`);
    const initial = buf[this.at];
    if (initial >> 5 !== major) throw this.fail(`${what}: wrong CBOR type`);
    const info = initial & 0x1f;
    if (info < 24) {
      this.at += 1;
      return info;
    }
    if (info > 27) throw this.fail(`${what}: indefinite length or reserved CBOR head`);
    const size = 1 << (info - 24);
    const end = this.at + 1 + size;
    if (end > buf.length) throw this.fail(`${what}: truncated`);
    let value = 0n;
    for (let i = this.at + 1; i < end; i++) value = (value << 8n) | BigInt(buf[i]);
    if (value < BigInt(SHORTEST[info - 24])) throw this.fail(`${what}: not in its shortest form`);
    this.at = end;
    // Values past 2**53 only occur as times far beyond any clock; as Numbers they still
    // compare correctly with any realistic now.
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  uint(what) {
    return this.argument(0, what);
  }

  int(what) {
    if (this.at < this.buf.length && this.buf[this.at] >> 5 === 1) {
      const negated = this.argument(1, what);
      return typeof negated === 'bigint' ? -1n - negated : -1 - negated;
    }
    return this.argument(0, what);
  }

  bstr(what) {
    const length = this.argument(2, what);
    const end = this.at + Number(length);
    if (typeof length === 'bigint' || end > this.buf.length) throw this.fail(`${what}: truncated`);
    const out = this.buf.subarray(this.at, end);
    this.at = end;
    return out;
  }

  /** Step over exactly these bytes, or fail with `what`. */
  expect(bytes, what) {
    for (let i = 0; i < bytes.length; i++) {
      if (this.buf[this.at + i] !== bytes[i]) throw this.fail(what);
    }
    this.at += bytes.length;
  }

  /** `size` bytes after the exact `head`. */
  fixed(head, size, what) {
    this.expect(head, what);
    if (this.at + size > this.buf.length) throw this.fail(`${what}: truncated`);
    const out = this.buf.subarray(this.at, this.at + size);
    this.at += size;
    return out;
  }

  end(what) {
    if (this.at !== this.buf.length) throw this.fail(`${what}: trailing bytes`);
  }
}

/**
 * The envelope shared by codes and signed lists: `18([bstr, {}, bstr, bstr])`, nothing after,
 * and its protected header `{1: alg, 4: kid(8 bytes)}`.
 */
export function readSign1(bytes, fail = malformed) {
  const reader = new Reader(bytes, fail);
  reader.expect([0xd2, 0x84], 'not a tagged COSE_Sign1 (tag 18, array of four)');
  const protectedBytes = reader.bstr('protected header');
  reader.expect([0xa0], 'the unprotected header must be an empty map');
  const payload = reader.bstr('payload');
  const signature = reader.bstr('signature');
  reader.end('COSE_Sign1');
  const header = new Reader(protectedBytes, fail);
  header.expect([0xa2, 0x01], 'protected header: must be the map {1: alg, 4: kid}');
  const alg = header.int('alg');
  const kid = header.fixed([0x04, 0x48], 8, 'kid: must be 8 bytes (label 4)');
  header.end('protected header');
  return { alg, kid, protected: protectedBytes, payload, signature };
}

function parseClaims(payload) {
  const reader = new Reader(payload);
  reader.expect([0xa5, 0x04], 'claims: must be a map of five, starting with exp (4)');
  const exp = reader.uint('exp');
  reader.expect([0x06], 'claims: expected iat (6)');
  const iat = reader.uint('iat');
  const cti = reader.fixed([0x07, 0x46], 6, 'cti: must be 6 bytes (7)');
  const subject = reader.fixed([0x20, 0x4c], 12, 'subject: must be 12 bytes (-1)');
  reader.expect([0x21, 0x84], 'status: must be [kind, city, colour, version] (-2)');
  const kind = KINDS[reader.uint('status kind')];
  const cityPrefix = reader.uint('status city');
  const colour = COLOURS[reader.uint('status colour')];
  const version = reader.uint('status version');
  reader.end('claims');
  if (kind === undefined || colour === undefined || !CITY_PREFIXES.includes(cityPrefix)) {
    throw malformed('status: unknown kind, city or colour');
  }
  if (typeof version !== 'number' || version > MAX_VERSION) {
    throw malformed('status: version must be below 2**32');
  }
  if (BigInt(iat) > BigInt(exp)) throw malformed('claims: iat is after exp');
  return Object.freeze({
    exp: Number(exp),
    iat: Number(iat),
    cti: toHex(cti),
    subject: b64urlEncode(subject),
    kind,
    city: cityPrefix * 100,
    colour,
    version,
  });
}

/**
 * Decode a code's text (steps 1-3: prefix, base45, structure); the signature is NOT checked.
 * Returns `{alg, kid, claims, protected, payload, signature}`; `claims` has `exp`, `iat`,
 * `cti` (hex), `subject` (base64url), `kind`, `city` (six digits), `colour` and `version`.
 */
export function decode(text) {
  if (typeof text !== 'string' || !text.startsWith(PREFIX)) {
    throw malformed(`a code starts with ${PREFIX}`);
  }
  if (text.length > MAX_TOKEN_CHARS) throw malformed('too long to be a code');
  const bytes = b45decode(text.slice(PREFIX.length));
  if (bytes === null) throw malformed('not strict base45');
  return decodeCose(bytes);
}

/** Decode COSE bytes strictly (step 3). */
export function decodeCose(bytes) {
  const sign1 = readSign1(bytes);
  return Object.freeze({ ...sign1, claims: parseClaims(sign1.payload) });
}

function bstrHead(length) {
  if (length < 24) return [0x40 | length];
  if (length < 256) return [0x58, length];
  if (length < 65536) return [0x59, length >> 8, length & 0xff];
  return [0x5a, length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff];
}

/** The COSE Sig_structure `["Signature1", protected, h'', payload]` the signature covers. */
export function sigStructure(protectedBytes, payload) {
  return concat(
    SIG1_CONTEXT,
    new Uint8Array(bstrHead(protectedBytes.length)),
    protectedBytes,
    new Uint8Array([0x40, ...bstrHead(payload.length)]),
    payload,
  );
}
