// Strict base45 (RFC 9285), as docs/code-format.md section 2 requires: every byte string has
// exactly one text, so anything a lenient decoder would accept is refused.

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:';
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/**
 * The bytes of a base45 text, or null if it is not strict base45: a character outside the
 * alphabet (lower case, line breaks, non-ASCII), a length of 1 modulo 3, a group over 65535,
 * or a final pair over 255.
 */
export function b45decode(text) {
  const size = text.length;
  if (size % 3 === 1) return null;
  const out = new Uint8Array(Math.floor(size / 3) * 2 + (size % 3 === 2 ? 1 : 0));
  let at = 0;
  for (let i = 0; i < size; i += 3) {
    const c = digit(text, i);
    const d = digit(text, i + 1);
    if (c < 0 || d < 0) return null;
    if (i + 2 < size) {
      const e = digit(text, i + 2);
      if (e < 0) return null;
      const n = c + 45 * d + 2025 * e;
      if (n > 0xffff) return null;
      out[at++] = n >> 8;
      out[at++] = n & 0xff;
    } else {
      const n = c + 45 * d;
      if (n > 0xff) return null;
      out[at++] = n;
    }
  }
  return out;
}

/** The base45 text of bytes. */
export function b45encode(bytes) {
  let out = '';
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    let n = (bytes[i] << 8) | bytes[i + 1];
    for (let j = 0; j < 3; j++) {
      out += ALPHABET[n % 45];
      n = Math.floor(n / 45);
    }
  }
  if (bytes.length % 2 === 1) {
    const n = bytes[bytes.length - 1];
    out += ALPHABET[n % 45] + ALPHABET[Math.floor(n / 45)];
  }
  return out;
}

function digit(text, i) {
  const code = text.charCodeAt(i);
  return code < 128 ? VALUE[code] : -1;
}
