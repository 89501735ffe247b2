// The national suite (docs/code-format.md section 13): SM3 and SM2 reproduce the standards'
// own examples (tests/vectors/national.json) before any code is verified with them.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { fromHex, sm2Digest, sm2Verify, sm2Za, sm3, toHex } from '../src/index.js';

const VECTORS = new URL('../../../tests/vectors/national.json', import.meta.url);
const CASES = JSON.parse(readFileSync(VECTORS, 'utf-8')).cases;
const big = (hex) => BigInt(`0x${hex}`);

describe('SM3 (GB/T 32905 Appendix A)', () => {
  for (const c of CASES.filter((v) => v.kind === 'sm3')) {
    test(c.id, () => assert.equal(toHex(sm3(fromHex(c.message_hex))), c.digest));
  }
});

describe('SM2 (GB/T 32918.5 Annex A)', () => {
  const c = CASES.find((v) => v.kind === 'sm2');
  const message = new TextEncoder().encode(c.message);
  const za = sm2Za(big(c.x), big(c.y), new TextEncoder().encode(c.signer_id));

  test('Z_A and e', () => {
    assert.equal(toHex(za), c.z_a);
    assert.equal(toHex(sm2Digest(za, message)), c.e);
  });

  test('the example signature verifies, and not over another message', () => {
    const signature = fromHex(c.r + c.s);
    assert.equal(sm2Verify(big(c.x), big(c.y), za, signature, message), true);
    assert.equal(sm2Verify(big(c.x), big(c.y), za, signature, message.subarray(1)), false);
  });

  test('r or s out of [1, n - 1] is refused', () => {
    const n = 'fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123';
    const zero = '0'.repeat(64);
    for (const [r, s] of [[n, c.s], [c.r, zero], [zero, c.s]]) {
      assert.equal(sm2Verify(big(c.x), big(c.y), za, fromHex(r + s), message), false);
    }
  });
});
