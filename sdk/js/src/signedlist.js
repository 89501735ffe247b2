// Signed lists (docs/code-format.md section 12): the trust list and the revocation list as a
// trust anchor signs them, so that an offline terminal refuses a list that is unsigned, signed
// by another key, altered, expired, or older than the one it holds (a rollback).

import { b64urlDecode, bytesEqual } from './bytes.js';
import { Reader, readSign1, sigStructure } from './code.js';
import { KeyringError, ListRefused, Reason } from './errors.js';
import { parseStrictJSON } from './json.js';
import { DEFAULT_SUITES } from './suites.js';
import { TrustList } from './trustlist.js';
import { Revocations } from './verify.js';

/** What a signed list carries (payload label -1). */
export const ListKind = Object.freeze({ TRUST: 1, REVOCATIONS: 2 });
/** Longer documents are refused unread (step 1's allowance). */
export const MAX_LIST_BYTES = 8 * 1024 * 1024;

const KIND_NAMES = { 1: 'trust', 2: 'revocations' };
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function listRefused(reason, detail) {
  return new ListRefused(reason, detail);
}

const malformed = (detail) => listRefused(Reason.LIST_MALFORMED, detail);

function parse(document) {
  if (!(document instanceof Uint8Array)) {
    throw listRefused(Reason.LIST_UNSIGNED, 'a signed list is bytes (a COSE_Sign1)');
  }
  if (document.length > MAX_LIST_BYTES) throw malformed('the list is larger than a terminal reads');
  if (document[0] !== 0xd2 || document[1] !== 0x84) {
    throw listRefused(Reason.LIST_UNSIGNED, 'not a signed list (a tagged COSE_Sign1)');
  }
  const sign1 = readSign1(document, malformed);
  const reader = new Reader(sign1.payload, malformed);
  reader.expect([0xa5, 0x04], 'payload: must be a map of five, starting with exp (4)');
  const exp = reader.uint('exp');
  reader.expect([0x06], 'payload: expected iat (6)');
  const iat = reader.uint('iat');
  reader.expect([0x20], 'payload: expected kind (-1)');
  const kind = reader.uint('kind');
  reader.expect([0x21], 'payload: expected seq (-2)');
  const seq = reader.uint('seq');
  reader.expect([0x22], 'payload: expected content (-3)');
  const content = reader.bstr('content');
  reader.end('payload');
  if (KIND_NAMES[kind] === undefined) throw malformed('payload: unknown kind');
  if (BigInt(iat) > BigInt(exp)) throw malformed('payload: iat is after exp');
  const signed = Object.freeze({
    kind,
    seq,
    issuedAt: Number(iat),
    expiresAt: Number(exp),
    content,
    anchor: sign1.kid,
    document,
  });
  return { sign1, signed };
}

/**
 * A signed list's fields, its structure checked but not its signature (to read back a list a
 * terminal stored): `{kind, seq, issuedAt, expiresAt, content, anchor, document}`.
 */
export function readList(document) {
  return parse(document).signed;
}

/** Refuse `list` (LIST_ROLLBACK) unless it is newer than `held` or the very same bytes. */
export function checkNewer(list, held) {
  if (held === null || held === undefined) return;
  if (BigInt(list.seq) > BigInt(held.seq) || bytesEqual(list.document, held.document)) return;
  throw listRefused(
    Reason.LIST_ROLLBACK,
    `sequence ${list.seq} is not newer than ${held.seq}, the list already held`,
  );
}

/**
 * A terminal's check of a fetched list, in the order of section 12.3: `document` the bytes,
 * `kind` the ListKind asked for, `anchors` a TrustList of the configured trust anchors, `now`
 * integer seconds. Options: `held`, the list of this kind held now (from this function or
 * readList), and `suites`. Resolves to the list with its content read (`trust`, a TrustList,
 * or `revocations`, a Revocations); rejects with a ListRefused whose `reason` is the step's.
 */
export async function verifyListAt(document, kind, anchors, now, options = {}) {
  const { held = null, suites = DEFAULT_SUITES } = options;
  const { sign1, signed } = parse(document);
  const anchor = anchors.get(signed.anchor);
  if (anchor === undefined || !anchor.validAt(now)) {
    throw listRefused(Reason.LIST_UNKNOWN_ANCHOR, 'not signed by a trust anchor valid now');
  }
  if (!suites.some((suite) => suite.cose === sign1.alg) || anchor.alg !== sign1.alg) {
    throw listRefused(Reason.LIST_UNKNOWN_ANCHOR, "the algorithm is not its anchor's");
  }
  let valid = false;
  try {
    valid = await anchor.verify(sign1.signature, sigStructure(sign1.protected, sign1.payload));
  } catch {
    valid = false;
  }
  if (!valid) throw listRefused(Reason.LIST_BAD_SIGNATURE, 'the signature does not match');
  if (signed.kind !== kind) {
    throw listRefused(Reason.LIST_WRONG_KIND, `a ${KIND_NAMES[signed.kind]} list, not ${kind}`);
  }
  if (now > signed.expiresAt) {
    throw listRefused(Reason.LIST_EXPIRED, `the list expired at ${signed.expiresAt}`);
  }
  // A held list past its own expiry sets no floor: every list still valid was signed after it.
  checkNewer(signed, held !== null && now <= held.expiresAt ? held : null);
  if (kind === ListKind.TRUST) {
    try {
      return Object.freeze({ ...signed, trust: await TrustList.from(signed.content, { suites }) });
    } catch (error) {
      if (!(error instanceof KeyringError)) throw error;
      throw malformed(`trust list: ${error.message}`);
    }
  }
  return Object.freeze({ ...signed, revocations: revocationsFromJson(signed.content) });
}

/**
 * Read a revocation list's content strictly: exactly the members `codes` (code ids, 12
 * lower-case hex characters) and `keys` (key ids, 11 characters of base64url); ListRefused
 * LIST_MALFORMED names the first problem.
 */
export function revocationsFromJson(content) {
  let document;
  try {
    const text = typeof content === 'string' ? content : UTF8.decode(content);
    document = parseStrictJSON(text);
  } catch {
    throw malformed('the revocation list is not valid JSON');
  }
  const isObject = document !== null && typeof document === 'object' && !Array.isArray(document);
  const names = isObject ? Object.keys(document).sort().join() : '';
  if (names !== 'codes,keys') {
    throw malformed("a revocation list is an object with the members 'codes' and 'keys'");
  }
  const { codes, keys } = document;
  if (!Array.isArray(codes) || !Array.isArray(keys)) {
    throw malformed("revocation list members 'codes' and 'keys' are arrays");
  }
  for (const code of codes) {
    if (typeof code !== 'string' || !/^[0-9a-f]{12}$/.test(code)) {
      throw malformed('a revocation list entry is not a code id');
    }
  }
  for (const kid of keys) {
    let bytes = null;
    try {
      bytes = typeof kid === 'string' ? b64urlDecode(kid) : null;
    } catch {
      bytes = null;
    }
    if (bytes === null || bytes.length !== 8) {
      throw malformed('a revocation list entry is not a key id');
    }
  }
  return new Revocations({ codes, keys });
}
