// The reason codes the engine gives for every refusal, and the errors that carry them.
//
// The codes are the Python SDK's (codeengine/code/errors.py, Reason): APIs, the offline SDK,
// metrics and this verifier share them, so a code, once published, never changes its meaning.

/** The stable reason codes of verifying a code and checking a signed list. */
export const Reason = Object.freeze({
  VALID: 'VALID',
  MALFORMED: 'MALFORMED',
  UNSUPPORTED_ALG: 'UNSUPPORTED_ALG',
  UNKNOWN_KID: 'UNKNOWN_KID',
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  EXPIRED: 'EXPIRED',
  NOT_YET_VALID: 'NOT_YET_VALID',
  REVOKED: 'REVOKED',
  TRUST_LIST_STALE: 'TRUST_LIST_STALE',
  LIST_UNSIGNED: 'LIST_UNSIGNED',
  LIST_MALFORMED: 'LIST_MALFORMED',
  LIST_UNKNOWN_ANCHOR: 'LIST_UNKNOWN_ANCHOR',
  LIST_BAD_SIGNATURE: 'LIST_BAD_SIGNATURE',
  LIST_WRONG_KIND: 'LIST_WRONG_KIND',
  LIST_EXPIRED: 'LIST_EXPIRED',
  LIST_ROLLBACK: 'LIST_ROLLBACK',
  KEYRING: 'KEYRING',
});

/** Root of every error this package throws on purpose; `reason` is a Reason code. */
export class CodeEngineError extends Error {
  constructor(reason, detail) {
    super(detail || reason);
    this.name = new.target.name;
    this.reason = reason;
  }
}

/** A code was refused; `reason` says why (MALFORMED ... NOT_YET_VALID, REVOKED). */
export class VerificationError extends CodeEngineError {}

/** A trust list (or an anchor document) could not be read: reason KEYRING. */
export class KeyringError extends CodeEngineError {
  constructor(detail) {
    super(Reason.KEYRING, detail);
  }
}

/** A signed list was refused; `reason` is one of the LIST_* codes. The held list stays. */
export class ListRefused extends CodeEngineError {}

/** Shorthand for a refusal of a code. */
export function refuse(reason, detail) {
  return new VerificationError(reason, detail);
}
