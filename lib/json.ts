import { SerializationError } from './errors.js';

/** Deepest nesting accepted in stored JSON; far below where `JSON.stringify` itself gives up (~4,000). */
export const MAX_JSON_DEPTH = 64;

/**
 * Encodes a value that durable-flow must store (an input, a step result, an output, an event payload)
 * as JSON text, or returns `undefined` for `undefined`. Anything that would not come back equal after
 * a round trip through Postgres `jsonb` is refused with a `SerializationError` that names where it is:
 * BigInt, functions, symbols, Map/Set, NaN/Infinity, cycles, `\u0000` and lone surrogates (which jsonb
 * rejects), nesting deeper than 64 levels, and text larger than `maxBytes`. Dates become ISO strings.
 */
export function encodeJson(value: unknown, what: string, maxBytes: number): string | undefined {
  if (value === undefined) return undefined;
  check(value, '$', what, new Set(), 0);
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new SerializationError(`${what} cannot be stored as JSON: ${(error as Error).message}`);
  }
  // A toJSON() that returns undefined at the top level.
  if (text === undefined) return undefined;
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) {
    throw new SerializationError(
      `${what} is ${bytes} bytes of JSON, over the limit of ${maxBytes} bytes; store large data elsewhere (a table, a bucket) and return a reference to it, or raise \`maxPayloadSize\``,
    );
  }
  return text;
}

function describeType(value: object): string {
  const name = value.constructor?.name;
  return name ? `a ${name}` : 'an object without a prototype';
}

function fail(what: string, path: string, problem: string): never {
  throw new SerializationError(`${what} cannot be stored as JSON: ${path} ${problem}`);
}

function checkString(text: string, what: string, path: string): void {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0) {
      fail(what, path, 'contains the character \\u0000, which Postgres jsonb cannot store; remove it or encode the value (for example as base64)');
    }
    if (code >= 0xd800 && code <= 0xdfff) {
      const isHigh = code <= 0xdbff;
      const next = text.charCodeAt(i + 1);
      if (isHigh && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      fail(what, path, 'contains a lone UTF-16 surrogate, which Postgres jsonb cannot store; the text is not valid Unicode');
    }
  }
}

function check(value: unknown, path: string, what: string, seen: Set<object>, depth: number): void {
  switch (typeof value) {
    case 'string':
      checkString(value, what, path);
      return;
    case 'number':
      if (!Number.isFinite(value)) fail(what, path, `is ${value}, which JSON cannot represent`);
      return;
    case 'boolean':
      return;
    case 'bigint':
      fail(what, path, 'is a BigInt; convert it to a string or a number first');
    // falls through (fail never returns)
    case 'function':
      fail(what, path, 'is a function');
    // falls through
    case 'symbol':
      fail(what, path, 'is a symbol');
    // falls through
    case 'undefined':
      return;
    default:
      break;
  }
  if (value === null) return;
  const object = value as object;
  if (depth >= MAX_JSON_DEPTH) fail(what, path, `is nested more than ${MAX_JSON_DEPTH} levels deep`);
  if (typeof (object as { toJSON?: unknown }).toJSON === 'function') {
    if (object instanceof Date) {
      if (Number.isNaN(object.getTime())) fail(what, path, 'is an invalid Date');
      return;
    }
    const replaced = (object as { toJSON: () => unknown }).toJSON();
    if (replaced !== object) check(replaced, path, what, seen, depth + 1);
    return;
  }
  if (
    object instanceof Map ||
    object instanceof Set ||
    object instanceof WeakMap ||
    object instanceof WeakSet ||
    object instanceof Promise ||
    object instanceof RegExp
  ) {
    fail(what, path, `is ${describeType(object)}, which JSON would silently turn into {}; convert it to a plain object or array`);
  }
  if (ArrayBuffer.isView(object)) {
    fail(what, path, `is ${describeType(object)}; encode binary data as a base64 string`);
  }
  if (seen.has(object)) fail(what, path, 'refers back to one of its own parents (a circular reference)');
  seen.add(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) check(object[i], `${path}[${i}]`, what, seen, depth + 1);
  } else {
    for (const key of Object.keys(object)) {
      checkString(key, what, `${path} key ${JSON.stringify(key.slice(0, 40))}`);
      check((object as Record<string, unknown>)[key], `${path}.${key}`, what, seen, depth + 1);
    }
  }
  seen.delete(object);
}

/** True for `{}`-style objects (not arrays, not class instances). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
