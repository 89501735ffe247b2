// The strict readers: base45 (section 2), the trust list (section 7) and its JSON, where a
// lenient reader would accept a second spelling or decide which keys a terminal believes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { KeyringError, TrustList, b45decode, b45encode, b64urlDecode } from '../src/index.js';

const VECTORS = new URL('../../../tests/vectors/tokens.json', import.meta.url);
const JWKS = JSON.parse(readFileSync(VECTORS, 'utf-8')).trust_list;
const ED25519_JWK = JWKS.keys.find((jwk) => jwk.alg === 'EdDSA');
const ES256_JWK = JWKS.keys.find((jwk) => jwk.alg === 'ES256');

describe('base45', () => {
  test('RFC 9285 examples round-trip', () => {
    const text = new TextEncoder().encode('ietf!');
    assert.equal(b45encode(text), 'QED8WEX0');
    assert.deepEqual(b45decode('QED8WEX0'), text);
    assert.deepEqual(b45decode('BB8'), new TextEncoder().encode('AB'));
  });

  test('anything without exactly one spelling is refused', () => {
    for (const text of ['QED8WEX0\n', 'qed8wex0', 'QED8WEX', 'GGW', 'GG', 'QED8WEX\u00e9']) {
      assert.equal(b45decode(text), null, JSON.stringify(text));
    }
  });
});

describe('trust list', () => {
  const refused = async (document, why) =>
    assert.rejects(TrustList.from(document), KeyringError, why);

  test('reads a key written by hand with its members in any order', async () => {
    const { kid, ...rest } = ED25519_JWK;
    const list = await TrustList.from({ keys: [{ ...rest, kid }] });
    assert.equal(list.keys[0].kidText, kid);
  });

  test('refuses JSON a lenient parser would take', async () => {
    const text = JSON.stringify({ keys: [ED25519_JWK] });
    await refused(text.replace('"use":"sig"', '"use":"sig","use":"sig"'), 'repeated name');
    await refused(text.replace(`"nbf":${ED25519_JWK.nbf}`, `"nbf":${ED25519_JWK.nbf}.0`), '1.0');
    await refused(text.replace(`"nbf":${ED25519_JWK.nbf}`, '"nbf":true'), 'a boolean time');
    await refused(text.replace(`"nbf":${ED25519_JWK.nbf}`, '"nbf":NaN'), 'NaN');
    await refused(`${text}x`, 'text after the document');
  });

  test('refuses a key that is not exactly a trust-list key', async () => {
    const cases = {
      'a private member': { ...ED25519_JWK, d: ED25519_JWK.x },
      'an unknown member': { ...ED25519_JWK, iss: 'x' },
      'a missing member': { ...ED25519_JWK, use: undefined },
      'a kid of another key': { ...ED25519_JWK, kid: ES256_JWK.kid },
      'kty not its alg': { ...ED25519_JWK, alg: 'ES256' },
      'a padded x': { ...ED25519_JWK, x: `${ED25519_JWK.x}=` },
      'nbf after exp': { ...ED25519_JWK, nbf: ED25519_JWK.exp + 1 },
      'a P-256 point off the curve': { ...ES256_JWK, y: ES256_JWK.x },
      'an unknown alg': { ...ED25519_JWK, alg: 'RS256' },
    };
    for (const [why, jwk] of Object.entries(cases)) {
      await refused({ keys: [JSON.parse(JSON.stringify(jwk))] }, why);
    }
    await refused({ keys: [ED25519_JWK, ED25519_JWK] }, 'a kid twice');
    await refused({ keys: [], extra: 1 }, 'another member beside keys');
  });

  test('base64url has one spelling', () => {
    assert.throws(() => b64urlDecode('AB'), TypeError, 'non-zero padding bits');
    assert.deepEqual(b64urlDecode('AA'), new Uint8Array([0]));
  });
});
