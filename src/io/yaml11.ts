// YAML read as PyYAML reads it (the original's configs are loaded with PyYAML): the bytes must be
// UTF-8 without non-printable characters (else an error, as PyYAML's reader raises), and plain
// scalars resolve by PyYAML's YAML 1.1 rules: its regular expressions for bool, float, int, null
// and timestamp, tried in its order, and its constructors (octal `010`, sexagesimal `1:30`,
// underscores, `.inf`/`.nan`; `1e3`, `.`, `e0`, `._1` and `+.` stay strings). Quoted and block
// scalars are strings. Structure (mappings, sequences, anchors, merges) is the `yaml` package's;
// two differences, on purpose, both refusals: a key given twice in one mapping (PyYAML keeps the
// last), and the YAML 1.1 line breaks NEL, LS and PS (U+0085, U+2028, U+2029).
import type * as Yaml from 'yaml';
import type { Document } from 'yaml';
import { createRequire } from 'node:module';

// The `yaml` package loads at the first config read: commands without one start without it.
let yamlModule: typeof Yaml | undefined;
const yaml = (): typeof Yaml => (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml);

export class YamlError extends Error {
  constructor(message: string, readonly offset?: number) {
    super(message);
  }
}

// PyYAML's implicit resolvers (yaml/resolver.py), in the order it tries them.
const BOOL = /^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$/;
const FLOAT =
  /^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$/;
const INT = /^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$/;
const MERGE = /^(?:<<)$/;
const NULL = /^(?:~|null|Null|NULL|)$/;
const TIMESTAMP =
  /^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$/;
const VALUE = /^(?:=)$/;

// PyYAML's reader: characters it refuses ("special characters are not allowed").
// eslint-disable-next-line no-control-regex
const NON_PRINTABLE = /[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

const STR = 'tag:yaml.org,2002:str';

/** A Python int: a number when it is exact, else a bigint. */
function pyInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** PyYAML's construct_yaml_int. */
export function constructInt(text: string): number | bigint {
  let value = text.replace(/_/g, '');
  let sign = 1n;
  if (value[0] === '-') sign = -1n;
  if (value[0] === '-' || value[0] === '+') value = value.slice(1);
  const bad = () => new YamlError(`invalid literal for int(): '${text}'`);
  if (value === '0') return 0;
  if (value.startsWith('0b')) {
    if (!/^[01]+$/.test(value.slice(2))) throw bad();
    return pyInt(sign * BigInt(value));
  }
  if (value.startsWith('0x')) {
    if (!/^[0-9a-fA-F]+$/.test(value.slice(2))) throw bad();
    return pyInt(sign * BigInt(value));
  }
  if (value[0] === '0') {
    if (!/^[0-7]+$/.test(value)) throw bad();
    return pyInt(sign * BigInt(`0o${value}`));
  }
  if (value.includes(':')) {
    const digits = value.split(':').map((p) => {
      if (!/^[0-9]+$/.test(p)) throw bad();
      return BigInt(p);
    });
    digits.reverse();
    let base = 1n;
    let v = 0n;
    for (const d of digits) {
      v += d * base;
      base *= 60n;
    }
    return pyInt(sign * v);
  }
  if (!/^[0-9]+$/.test(value)) throw bad();
  return pyInt(sign * BigInt(value));
}

/** PyYAML's construct_yaml_float. */
export function constructFloat(text: string): number {
  let value = text.replace(/_/g, '').toLowerCase();
  let sign = 1;
  if (value[0] === '-') sign = -1;
  if (value[0] === '-' || value[0] === '+') value = value.slice(1);
  if (value === '.inf') return sign * Infinity;
  if (value === '.nan') return NaN;
  const num = (s: string): number => {
    // Python's float(): decimal digits with an optional point and exponent.
    if (!/^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?$/.test(s)) throw new YamlError(`could not convert string to float: '${text}'`);
    return Number(s);
  };
  if (value.includes(':')) {
    const digits = value.split(':').map(num);
    digits.reverse();
    let base = 1;
    let v = 0.0;
    for (const d of digits) {
      v += d * base;
      base *= 60;
    }
    return sign * v;
  }
  return sign * num(value);
}

function constructBool(text: string): boolean {
  return ['yes', 'true', 'on'].includes(text.toLowerCase());
}

function constructTimestamp(text: string): Date {
  const m = /^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:(?:[Tt]|[ \t]+)([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]*))?(?:[ \t]*(Z|([-+])([0-9]{1,2})(?::([0-9]{2}))?))?)?$/.exec(text);
  if (!m) throw new YamlError(`invalid timestamp '${text}'`);
  const [, y, mo, d, h, mi, s, frac, tz, tzs, tzh, tzm] = m;
  const ms = frac ? Math.floor(Number(`0.${frac}`) * 1000) : 0;
  let t = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h ?? 0), Number(mi ?? 0), Number(s ?? 0), ms);
  if (tz && tz !== 'Z') t -= (tzs === '-' ? -1 : 1) * (Number(tzh) * 60 + Number(tzm ?? 0)) * 60_000;
  return new Date(t);
}

/** The value of a plain scalar, by PyYAML's implicit resolution. */
export function resolvePlain(text: string): unknown {
  if (BOOL.test(text)) return constructBool(text);
  if (FLOAT.test(text)) return constructFloat(text);
  if (INT.test(text)) return constructInt(text);
  if (MERGE.test(text)) throw new YamlError("'<<' (a merge key) is not a value");
  if (NULL.test(text)) return null;
  if (TIMESTAMP.test(text)) return constructTimestamp(text);
  if (VALUE.test(text)) throw new YamlError("could not determine a constructor for the tag 'tag:yaml.org,2002:value' ('=')");
  return text;
}

/** The value of a scalar with an explicit standard tag (`!!int 3`). */
function resolveTagged(tag: string, text: string): unknown {
  switch (tag) {
    case STR:
      return text;
    case 'tag:yaml.org,2002:int':
      return constructInt(text);
    case 'tag:yaml.org,2002:float':
      return constructFloat(text);
    case 'tag:yaml.org,2002:bool':
      if (!BOOL.test(text)) throw new YamlError(`'${text}' is not a boolean`);
      return constructBool(text);
    case 'tag:yaml.org,2002:null':
      return null;
    case 'tag:yaml.org,2002:timestamp':
      return constructTimestamp(text);
    default:
      throw new YamlError(`could not determine a constructor for the tag '${tag}'`);
  }
}

/** Strict UTF-8 and PyYAML's printable-character rule; returns the text. */
export function decodeYamlBytes(buf: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    // find the first bad byte for the message
    let off = 0;
    for (let lo = 0, hi = buf.length; lo < hi; ) {
      const mid = (lo + hi + 1) >> 1;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, mid), { stream: true });
        lo = mid;
        off = mid;
      } catch {
        hi = mid - 1;
      }
    }
    throw new YamlError(`the file is not valid UTF-8 (byte 0x${(buf[off] ?? 0).toString(16).padStart(2, '0')} at offset ${off})`, off);
  }
  // YAML 1.1 also breaks lines at NEL, LS and PS, which the structure parser (YAML 1.2) does not:
  // refused rather than read differently.
  const lb = /[\u0085\u2028\u2029]/.exec(text);
  if (lb)
    throw new YamlError(`the YAML 1.1 line break #x${lb[0].codePointAt(0)!.toString(16)} (at character ${lb.index}) is not supported: use a plain newline`, lb.index);
  const m = NON_PRINTABLE.exec(text);
  if (m) {
    const cp = m[0].codePointAt(0)!;
    throw new YamlError(`special characters are not allowed (#x${cp.toString(16)} at character ${m.index})`, m.index);
  }
  // PyYAML reads every \r\n and every lone \r as a line break '\n', in scalars too.
  return text.replace(/\r\n?/g, '\n');
}

function resolveNode(node: unknown, doc: Document): unknown {
  const { isMap, isPair, isScalar, isSeq } = yaml();
  if (isScalar(node)) {
    const text = String(node.source ?? node.value ?? '');
    if (node.tag && node.tag !== '!' && node.tag !== STR) {
      node.value = resolveTagged(node.tag, text);
    } else if ((!node.tag && node.type === 'PLAIN') || node.tag === '!') {
      // PyYAML resolves a plain scalar, and any scalar tagged with the non-specific '!', implicitly.
      node.value = resolvePlain(text);
    } else {
      node.value = text;
    }
  } else if (isMap(node)) {
    if (node.tag && node.tag !== 'tag:yaml.org,2002:map') throw new YamlError(`could not determine a constructor for the tag '${node.tag}'`);
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      if (!(isScalar(pair.key) && pair.key.type === 'PLAIN' && !pair.key.tag && pair.key.source === '<<')) resolveNode(pair.key, doc);
      resolveNode(pair.value, doc);
    }
  } else if (isSeq(node)) {
    if (node.tag && node.tag !== 'tag:yaml.org,2002:seq') throw new YamlError(`could not determine a constructor for the tag '${node.tag}'`);
    for (const item of node.items) resolveNode(item, doc);
  }
  return node;
}

/** Parses YAML bytes as PyYAML's safe_load would; throws YamlError. */
export function parseYamlLikePyYAML(buf: Uint8Array): unknown {
  const text = decodeYamlBytes(buf);
  let doc: Document;
  try {
    doc = yaml().parseDocument(text, { schema: 'failsafe', version: '1.1', merge: true, uniqueKeys: true, strict: false, keepSourceTokens: false });
  } catch (e) {
    throw new YamlError((e as Error).message.split('\n')[0] ?? String(e));
  }
  if (doc.errors.length > 0) throw new YamlError(doc.errors[0]!.message.split('\n')[0] ?? 'invalid YAML');
  resolveNode(doc.contents, doc);
  try {
    return doc.toJS({ maxAliasCount: 10000 });
  } catch (e) {
    throw new YamlError((e as Error).message.split('\n')[0] ?? String(e));
  }
}
