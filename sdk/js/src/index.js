// codeengine's JavaScript verifier: CE1 codes (docs/code-format.md) verified offline with
// WebCrypto (Ed25519, ES256) and the national suite (SM2 with SM3), with the engine's reason
// codes. ES modules, no dependencies, no build step: import this file in Node 20 or a browser.

export { b45decode, b45encode } from './base45.js';
export { b64urlDecode, b64urlEncode, fromHex, toHex } from './bytes.js';
export {
  COLOURS,
  KINDS,
  MAX_TOKEN_CHARS,
  PREFIX,
  decode,
  decodeCose,
  sigStructure,
} from './code.js';
export { CodeEngineError, KeyringError, ListRefused, Reason, VerificationError } from './errors.js';
export { DEFAULT_MAX_AGE_S, OfflineVerifier } from './offline.js';
export { ListKind, checkNewer, readList, revocationsFromJson, verifyListAt } from './signedlist.js';
export { sm2Digest, sm2Verify, sm2Za } from './sm2.js';
export { sm3 } from './sm3.js';
export { DEFAULT_SUITES, ED25519, ES256, SM2SM3 } from './suites.js';
export { TrustList, TrustedKey, keyId } from './trustlist.js';
export {
  DEFAULT_SKEW_S,
  Revocations,
  checkWindowAt,
  offlineVerdictAt,
  verifyAt,
} from './verify.js';
