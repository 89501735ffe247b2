// Conformance (docs/code-format.md section 11): every case of tests/vectors/tokens.json gives
// its expected answer, and the offline verdict agrees wherever its order of checks cannot
// change the reason.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  Reason,
  Revocations,
  TrustList,
  VerificationError,
  b64urlEncode,
  decode,
  offlineVerdictAt,
  sigStructure,
  toHex,
  verifyAt,
} from '../src/index.js';
const VECTORS = new URL('../../../tests/vectors/', import.meta.url);
const DOCUMENT = JSON.parse(readFileSync(new URL('tokens.json', VECTORS), 'utf-8'));
const TRUST = await TrustList.from(JSON.stringify(DOCUMENT.trust_list));
const SKEW_S = DOCUMENT.skew_s;

test('the vectors cover every reason of the verifier', () => {
  const expected = new Set(DOCUMENT.cases.map((c) => c.expect));
  const reasons = ['VALID', 'MALFORMED', 'UNSUPPORTED_ALG', 'UNKNOWN_KID', 'BAD_SIGNATURE'];
  assert.deepEqual([...expected].sort(), [...reasons, 'EXPIRED', 'NOT_YET_VALID'].sort());
});

test('the trust list of the vectors is read whole', () => {
  assert.equal(TRUST.size, DOCUMENT.trust_list.keys.length);
  assert.deepEqual(
    TRUST.keys.map((key) => key.kidText),
    DOCUMENT.trust_list.keys.map((jwk) => jwk.kid),
  );
});

describe('every vector gives its expected answer', () => {
  for (const c of DOCUMENT.cases) {
    test(c.id, async () => {
      if (c.expect === 'VALID') {
        assert.deepEqual(await verifyAt(c.token, TRUST, c.now, { skewS: SKEW_S }), c.claims);
        return;
      }
      await assert.rejects(verifyAt(c.token, TRUST, c.now, { skewS: SKEW_S }), (error) => {
        assert.ok(error instanceof VerificationError, `${c.id}: ${error}`);
        assert.equal(error.reason, c.expect, c.why);
        return true;
      });
    });
  }
});

describe('valid vectors decode to their bytes and key', () => {
  for (const c of DOCUMENT.cases.filter((v) => v.expect === 'VALID')) {
    test(c.id, () => {
      const decoded = decode(c.token);
      assert.equal(b64urlEncode(decoded.kid), c.kid);
      if (c.tbs_hex !== undefined) {
        assert.equal(toHex(sigStructure(decoded.protected, decoded.payload)), c.tbs_hex);
      }
    });
  }
});

describe('the offline verdict', () => {
  // The offline order checks the window before the signature, as the Python SDK does; a case
  // whose answer is a signature or algorithm refusal keeps it unless the code is also outside
  // its window, which no vector is.
  for (const c of DOCUMENT.cases) {
    test(c.id, async () => {
      const verdict = await offlineVerdictAt(c.token, TRUST, new Revocations(), c.now, SKEW_S);
      assert.equal(verdict.reason, c.expect, c.why);
      assert.equal(verdict.valid, c.expect === 'VALID');
      assert.equal(verdict.checked_at, c.now);
      if (c.expect === 'VALID') {
        assert.equal(verdict.colour, c.claims.colour);
        assert.equal(verdict.kind, c.claims.kind);
        assert.equal(verdict.city, c.claims.city);
        assert.equal(verdict.as_of, c.claims.iat);
      } else {
        assert.equal(verdict.colour, null);
      }
    });
  }

  const valid = DOCUMENT.cases.filter((c) => c.expect === 'VALID');

  test('a revoked code id answers REVOKED, whatever its signature', async () => {
    for (const c of valid) {
      const revoked = new Revocations({ codes: [c.claims.cti] });
      const verdict = await offlineVerdictAt(c.token, TRUST, revoked, c.now, SKEW_S);
      assert.equal(verdict.reason, Reason.REVOKED, c.id);
      assert.equal(verdict.kind, c.claims.kind);
    }
  });

  test('a revoked key answers REVOKED for every code it signed, and only those', async () => {
    const revoked = new Revocations({ keys: [valid[0].kid] });
    for (const c of valid) {
      const verdict = await offlineVerdictAt(c.token, TRUST, revoked, c.now, SKEW_S);
      assert.equal(verdict.reason, c.kid === valid[0].kid ? Reason.REVOKED : Reason.VALID, c.id);
    }
  });

  test('a code past its window answers EXPIRED before its signature is checked', async () => {
    const c = DOCUMENT.cases.find((v) => v.id === 'bad-signature-flipped-bit');
    const late = 1800000120 + SKEW_S + 1;
    const verdict = await offlineVerdictAt(c.token, TRUST, new Revocations(), late, SKEW_S);
    assert.equal(verdict.reason, Reason.EXPIRED);
    await assert.rejects(verifyAt(c.token, TRUST, late), { reason: Reason.BAD_SIGNATURE });
  });
});
