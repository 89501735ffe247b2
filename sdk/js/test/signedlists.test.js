// Conformance for signed lists (docs/code-format.md section 12.5): every case of
// tests/vectors/signed_lists.json, and the offline verifier that holds such lists.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import {
  ListRefused,
  OfflineVerifier,
  Reason,
  TrustList,
  fromHex,
  readList,
  verifyListAt,
} from '../src/index.js';

const VECTORS = new URL('../../../tests/vectors/', import.meta.url);
const read = (name) => JSON.parse(readFileSync(new URL(`${name}.json`, VECTORS), 'utf-8'));
const DOCUMENT = read('signed_lists');
const ANCHORS = await TrustList.from(DOCUMENT.anchors);
const CASES = DOCUMENT.cases;
const byId = (id) => fromHex(CASES.find((c) => c.id === id).document_hex);

describe('every signed-list vector gives its expected answer', () => {
  for (const c of CASES) {
    test(c.id, async () => {
      const held = c.held_hex === undefined ? null : readList(fromHex(c.held_hex));
      const kind = DOCUMENT.kinds[c.kind];
      const checking = verifyListAt(fromHex(c.document_hex), kind, ANCHORS, c.now, { held });
      if (c.expect !== 'VALID') {
        await assert.rejects(checking, (error) => {
          assert.ok(error instanceof ListRefused, `${c.id}: ${error}`);
          assert.equal(error.reason, c.expect, c.why);
          return true;
        });
        return;
      }
      const list = await checking;
      assert.equal(BigInt(list.seq), BigInt(c.seq));
      assert.equal(new TextDecoder().decode(list.content), c.content);
      const content = JSON.parse(c.content);
      if (c.kind === 'trust') {
        assert.deepEqual(
          list.trust.keys.map((key) => key.kidText),
          content.keys.map((jwk) => jwk.kid),
        );
      } else {
        assert.deepEqual([...list.revocations.codes], content.codes);
        assert.deepEqual([...list.revocations.keys], content.keys);
      }
    });
  }
});

describe('the offline verifier on signed lists', () => {
  const tokens = read('tokens');
  const valid = tokens.cases.find((c) => c.id === 'valid-ed25519-health-green');
  const es256 = tokens.cases.find((c) => c.id === 'valid-es256-health-yellow');
  const trustList = byId('valid-trust-ed25519');
  const revocations = byId('valid-revocations-ed25519');

  test('holds the checked lists and applies the revocations they carry', async () => {
    let now = 1800000000;
    const verifier = await OfflineVerifier.fromSigned(trustList, revocations, ANCHORS, {
      clock: () => now,
    });
    // The worked example revokes code 02e7330eb96d and key P_YqIuFAZCw (the ES256 key).
    assert.equal((await verifier.verify(valid.token)).reason, Reason.REVOKED);
    assert.equal((await verifier.verify(es256.token)).reason, Reason.REVOKED);
    now = 1800086401;
    assert.equal(verifier.stale, true);
    assert.equal((await verifier.verify(valid.token)).reason, Reason.TRUST_LIST_STALE);
  });

  test('refuses an older revocation list and keeps the one it holds', async () => {
    const newer = byId('newer-than-held');
    const verifier = await OfflineVerifier.fromSigned(trustList, newer, ANCHORS, {
      clock: () => 1800000000,
    });
    assert.equal((await verifier.verify(valid.token)).reason, Reason.VALID);
    await assert.rejects(verifier.refresh(trustList, revocations), {
      reason: Reason.LIST_ROLLBACK,
    });
    assert.equal((await verifier.verify(valid.token)).reason, Reason.VALID);
  });

  test('a scanner line terminator is not part of the code', async () => {
    const verifier = await OfflineVerifier.fromSigned(trustList, byId('newer-than-held'), ANCHORS, {
      clock: () => 1800000000,
    });
    assert.equal((await verifier.verify(`${valid.token}\r\n`)).reason, Reason.VALID);
  });
});
