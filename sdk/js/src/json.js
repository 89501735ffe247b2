// A strict JSON reader for trust lists and revocation lists.
//
// JSON.parse keeps the last of repeated member names and reads `1.0` as the integer 1, so a
// document could say two things at once or pass a float for a time. The trust list must be
// refused in both cases (docs/code-format.md section 7), so this reader refuses repeated names
// and returns every number that is not a safe integer literal as a `JSONNumber`, which no
// integer check accepts.

/** A number that is not a plain integer literal in the safe range (`1.0`, `1e3`, `2**60`). */
export class JSONNumber {
  constructor(text) {
    this.text = text;
  }
}

/** The value of a JSON text; SyntaxError on anything RFC 8259 refuses or a repeated name. */
export function parseStrictJSON(text) {
  const reader = new Reader(text);
  reader.space();
  const value = reader.value(0);
  reader.space();
  if (reader.at !== text.length) reader.fail('text after the value');
  return value;
}

const MAX_DEPTH = 64;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

class Reader {
  constructor(text) {
    this.text = text;
    this.at = 0;
  }

  fail(what) {
    throw new SyntaxError(`JSON: ${what} at ${this.at}`);
  }

  space() {
    while (' \t\n\r'.includes(this.text[this.at] ?? 'x')) this.at++;
  }

  literal(word, value) {
    if (!this.text.startsWith(word, this.at)) this.fail('unexpected character');
    this.at += word.length;
    return value;
  }

  value(depth) {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    const c = this.text[this.at];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === 't') return this.literal('true', true);
    if (c === 'f') return this.literal('false', false);
    if (c === 'n') return this.literal('null', null);
    return this.number();
  }

  number() {
    NUMBER.lastIndex = this.at;
    const match = NUMBER.exec(this.text);
    if (match === null || match[0] === '' || match[0] === '-') this.fail('not a value');
    this.at += match[0].length;
    const integer = match[1] === undefined && match[2] === undefined;
    const value = Number(match[0]);
    return integer && Number.isSafeInteger(value) ? value : new JSONNumber(match[0]);
  }

  string() {
    this.at++;
    let out = '';
    for (;;) {
      const c = this.text[this.at++];
      if (c === undefined) this.fail('unterminated string');
      if (c === '"') return out;
      if (c < ' ') this.fail('control character in a string');
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = this.text[this.at++];
      if (e === 'u') {
        const hex = this.text.slice(this.at, this.at + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad \\u escape');
        out += String.fromCharCode(parseInt(hex, 16));
        this.at += 4;
      } else if (e in ESCAPES) {
        out += ESCAPES[e];
      } else {
        this.fail('bad escape');
      }
    }
  }

  array(depth) {
    this.at++;
    const out = [];
    this.space();
    if (this.text[this.at] === ']') {
      this.at++;
      return out;
    }
    for (;;) {
      this.space();
      out.push(this.value(depth + 1));
      this.space();
      const c = this.text[this.at++];
      if (c === ']') return out;
      if (c !== ',') this.fail('expected , or ]');
    }
  }

  object(depth) {
    this.at++;
    const entries = new Map();
    this.space();
    if (this.text[this.at] === '}') {
      this.at++;
      return {};
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail('expected a member name');
      const name = this.string();
      if (entries.has(name)) this.fail('repeated member name');
      this.space();
      if (this.text[this.at++] !== ':') this.fail('expected :');
      this.space();
      entries.set(name, this.value(depth + 1));
      this.space();
      const c = this.text[this.at++];
      if (c === '}') return Object.fromEntries(entries);
      if (c !== ',') this.fail('expected , or }');
    }
  }
}
