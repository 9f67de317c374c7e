/**
 * Reading the viewer's requests: every parameter is validated before it reaches SQL, and a bad one is
 * an HttpError whose message says what is accepted.
 */
import type { Request } from 'express';
import type { RunStatus } from '../types.js';
import { decodeCursor } from '../read/cursor.js';
import { RUN_STATUSES } from '../read/lists.js';
import type { RunFilter, RunScope, TagFilter } from '../read/lists.js';
import { MAX_TAGS, parseTagFilter } from '../tags.js';
import { runIdOfSegment } from './run-path.js';

/** A refusal of a request, answered with its status and message (as JSON under /api/, else as text). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function wantsJson(req: Request): boolean {
  return req.path.startsWith('/api/') || req.get('accept')?.includes('application/json') === true;
}

export function text(value: unknown, what: string, max: number): string | null {
  if (value === undefined || value === '') return null;
  if (typeof value !== 'string' || value.length > max) throw new HttpError(400, `Invalid ${what}: expected one string of at most ${max} characters`);
  // Postgres text cannot hold U+0000: bound as a parameter it would be an SQL error, not a filter.
  if (value.includes('\u0000')) throw new HttpError(400, `Invalid ${what}: it contains the character U+0000`);
  return value;
}

/**
 * Refuses query parameters a list does not know (`sort`, `order`, a misspelt filter): silently ignoring
 * them would show an unfiltered list as if it were the filtered one.
 */
export function onlyParameters(query: Request['query'], allowed: readonly string[]): void {
  for (const key of Object.keys(query)) {
    if (!allowed.includes(key)) {
      const accepted = allowed.length > 0 ? `this list accepts ${allowed.join(', ')}` : 'this address takes none';
      throw new HttpError(400, `Unknown query parameter "${key.slice(0, 40)}": ${accepted}`);
    }
  }
}

/** A page size: absent is `fallback`; else an integer from 1 to `max`, written plainly (no `1e2`, no `0x10`). */
export function integerParameter(value: unknown, what: string, fallback: number, max: number): number {
  if (value === undefined || value === '') return fallback;
  const n = typeof value === 'string' && /^\d{1,6}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= max)) throw new HttpError(400, `Invalid ${what}: expected an integer from 1 to ${max}`);
  return n;
}

export const RUN_LIST_PARAMETERS = ['status', 'workflow', 'q', 'tag', 'before', 'limit', 'children', 'parent', 'fragment'];
export const EVENT_LIST_PARAMETERS = ['name', 'before', 'sent', 'duplicate', 'fragment'];

/** The run id of a URL; one that no run can have (too long, U+0000) is a 404 without asking Postgres. */
export function runIdParam(req: Request): string {
  const runId = runIdOfSegment(String(req.params.runId));
  if (runId.length > 255 || runId.includes('\u0000')) throw new HttpError(404, 'No run with this id: run ids are at most 255 characters, without U+0000');
  return runId;
}

export function runFilter(query: Request['query'], pageSize: number): RunFilter {
  onlyParameters(query, RUN_LIST_PARAMETERS);
  const status = text(query.status, 'status', 20);
  if (status !== null && !RUN_STATUSES.includes(status as RunStatus)) {
    throw new HttpError(400, `Invalid status: expected one of ${RUN_STATUSES.join(', ')}`);
  }
  const before = text(query.before, 'cursor', 80);
  const cursor = before === null ? null : decodeCursor(before);
  if (before !== null && !cursor) throw new HttpError(400, 'Invalid cursor: use the link of the previous page');
  const limit = integerParameter(query.limit, 'limit', pageSize, 500);
  return {
    scope: runScope(query),
    status: status as RunStatus | null,
    workflow: text(query.workflow, 'workflow', 255),
    q: text(query.q, 'search text', 200),
    tags: tagFilters(query.tag),
    before: cursor,
    limit,
  };
}

/** `tag=key:value`, repeatable (every one must match; one given twice counts once): at most MAX_TAGS, each as start() accepts tags. */
function tagFilters(value: unknown): TagFilter[] {
  const texts = value === undefined ? [] : Array.isArray(value) ? value : [value];
  if (texts.length > MAX_TAGS) throw new HttpError(400, `Invalid tag filter: at most ${MAX_TAGS} tag parameters, got ${texts.length}`);
  return texts.flatMap((tag, i) => {
    if (tag === '' || texts.indexOf(tag) < i) return [];
    if (typeof tag !== 'string') throw new HttpError(400, 'Invalid tag filter: expected tag=key:value, such as tag=customer:c1');
    const parsed = parseTagFilter(tag);
    if ('problem' in parsed) throw new HttpError(400, parsed.problem);
    return [parsed];
  });
}

/** `parent=<runId>`: that run's children; `children=1`: every run; neither: the top-level runs. */
function runScope(query: Request['query']): RunScope {
  const parent = text(query.parent, 'parent run id', 255);
  const children = text(query.children, 'children', 20);
  if (children !== null && children !== '1') throw new HttpError(400, 'Invalid children: expected 1 (list child runs too) or nothing');
  if (parent !== null) return { kind: 'children', parentRunId: parent };
  return children === '1' ? { kind: 'all' } : { kind: 'top' };
}

/** What a 4xx error of Express or its body parser means, in words that say what to change. */
export function clientError(error: { status: number; type?: string }): { status: number; message: string } {
  switch (error.type) {
    case 'entity.too.large':
      return { status: 413, message: 'The form is over the 200 kB limit of viewer actions: send a smaller payload' };
    case 'parameters.too.many':
      return { status: 413, message: 'The form has too many fields' };
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return { status: 415, message: 'Unsupported form encoding: send the form uncompressed, in UTF-8' };
    case 'request.aborted':
      return { status: 400, message: 'The request ended before its body was complete; send it again' };
    default:
      // Express answers 400 itself for a URL whose percent-encoding does not decode.
      return error.status === 400
        ? { status: 400, message: 'Bad request: the URL or form is malformed (check its percent-encoding)' }
        : { status: error.status, message: 'Bad request' };
  }
}

/** `?steps=<offset>` of the run page: the first step shown (0 when absent); `page` steps a page. */
export function stepOffsetParam(value: unknown, page: number): number {
  if (value === undefined || value === '') return 0;
  if (typeof value !== 'string' || !/^\d{1,7}$/.test(value)) {
    throw new HttpError(400, `Invalid steps: expected the offset of a step page (0, ${page}, ${2 * page} …)`);
  }
  return Number(value);
}
