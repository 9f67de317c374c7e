import type { IncomingMessage } from 'node:http';
import { checkInteger, invalidOption } from '../config.js';
import { toMilliseconds } from '../duration.js';
import type { DurationInput } from '../duration.js';
import { DurableFlowError } from '../errors.js';

/** What `authorize(req)` answers: allowed (`true`, or `{ actor }` naming the user), or refused (`false`). */
export type AuthorizeResult = boolean | { actor: string };

/** Options of `flow.router()`. Without `authorize`, `basicAuth` or `allowUnauthenticated`, the viewer denies everyone. */
export interface RouterOptions {
  /**
   * Decides who may use the viewer (pages, JSON, live updates, actions). May be async. Also called with
   * the socket.io handshake request. `true` allows; `{ actor }` allows and names the signed-in user (CSRF
   * tokens are bound to it); anything else refuses.
   */
  authorize?: (req: IncomingMessage) => AuthorizeResult | Promise<AuthorizeResult>;
  /**
   * HTTP basic credentials for the viewer (compared in constant time). The object is read at every
   * check: a password changed on it applies to the next request, and to open live sockets at their next recheck.
   */
  basicAuth?: { username: string; password: string };
  /** Lets anyone use the viewer. Only for local development. Default false. */
  allowUnauthenticated?: boolean;
  /** Secret(s) for the signed event-ingest endpoint (`POST <mount>/events`). Several during rotation. Without one the endpoint answers 404. */
  eventSecret?: string | string[];
  /** Largest ingest body in bytes. Default 1 MiB. */
  ingestLimit?: number;
  /** How far a signature timestamp may be from now, in seconds, either way. Default 300. */
  signatureTolerance?: number;
  /**
   * At most `limit` signed ingest requests per `period` on this mount, in this process (a token bucket:
   * bursts of `limit`, then the steady rate); beyond it `429` with `Retry-After`, nothing stored. Default none.
   */
  ingestRateLimit?: { limit: number; period: DurationInput };
  /** Runs per page in the run list. Default 50. */
  pageSize?: number;
  /** Title shown in the viewer's header. Default `'durable-flow'`. */
  title?: string;
}

export interface ResolvedRouterOptions {
  authorize: ((req: IncomingMessage) => AuthorizeResult | Promise<AuthorizeResult>) | undefined;
  basicAuth: { username: string; password: string } | undefined;
  allowUnauthenticated: boolean;
  eventSecrets: string[];
  ingestLimit: number;
  signatureTolerance: number;
  ingestRateLimit: { limit: number; periodMs: number; period: string } | undefined;
  pageSize: number;
  title: string;
}

export function resolveRouterOptions(options: RouterOptions = {}): ResolvedRouterOptions {
  if (typeof options !== 'object' || options === null) throw invalidOption('router options', options, 'an object');
  if (options.authorize !== undefined && typeof options.authorize !== 'function') {
    throw invalidOption('authorize', options.authorize, 'a function (req) => boolean | { actor: string } (or a Promise of one)');
  }
  const basic = options.basicAuth;
  if (basic !== undefined && (typeof basic?.username !== 'string' || typeof basic?.password !== 'string' || basic.password.length === 0)) {
    throw invalidOption('basicAuth', basic ? '{ … }' : basic, 'an object { username: string, password: non-empty string }');
  }
  const secrets = options.eventSecret === undefined ? [] : Array.isArray(options.eventSecret) ? options.eventSecret : [options.eventSecret];
  for (const secret of secrets) {
    if (typeof secret !== 'string' || secret.length < 16) {
      throw invalidOption('eventSecret', typeof secret === 'string' ? `a ${secret.length}-character string` : secret, 'a string of at least 16 characters (or an array of them)');
    }
  }
  const integer = (name: string, value: unknown, fallback: number, min: number, max: number) => {
    const v = value ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalidOption(name, v, `an integer from ${min} to ${max}`);
    return v;
  };
  return {
    authorize: options.authorize,
    basicAuth: basic,
    allowUnauthenticated: options.allowUnauthenticated === true,
    eventSecrets: secrets,
    ingestLimit: integer('ingestLimit', options.ingestLimit, 1024 * 1024, 1024, 64 * 1024 * 1024),
    signatureTolerance: integer('signatureTolerance', options.signatureTolerance, 300, 1, 86_400),
    ingestRateLimit: resolveRateLimit(options.ingestRateLimit),
    pageSize: integer('pageSize', options.pageSize, 50, 1, 500),
    title: typeof options.title === 'string' && options.title.length > 0 ? options.title : 'durable-flow',
  };
}

function resolveRateLimit(value: unknown): ResolvedRouterOptions['ingestRateLimit'] {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidOption('ingestRateLimit', value, "an object { limit, period } such as { limit: 100, period: '1 second' }");
  }
  const { limit, period } = value as { limit?: unknown; period?: unknown };
  checkInteger('ingestRateLimit.limit', limit, 1, 1_000_000);
  let periodMs: number;
  try {
    periodMs = toMilliseconds(period, '`ingestRateLimit.period`');
  } catch (error) {
    throw new DurableFlowError('INVALID_OPTION', (error as Error).message);
  }
  // Said back in the 429's message as the user wrote it.
  return { limit: limit as number, periodMs, period: typeof period === 'string' ? period.trim() : `${periodMs} ms` };
}
