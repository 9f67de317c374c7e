import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ResolvedRouterOptions } from './options.js';

export type AccessDecision =
  /** `actor`: the signed-in user (the basic-auth name, or the `actor` authorize() returned), null if none. */
  | { ok: true; actor: string | null }
  | { ok: false; status: 401 | 403; message: string; headers?: Record<string, string> };

const DENIED_BY_DEFAULT =
  'Access to the durable-flow viewer is denied by default. Configure flow.router() with one of: ' +
  'authorize: (req) => boolean | { actor } (your own check), basicAuth: { username, password }, or allowUnauthenticated: true (local development only).';

/** Equal-length digests, so the comparison takes the same time whatever the input's length. */
function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

function basicCredentials(req: IncomingMessage): { username: string; password: string } | undefined {
  const header = req.headers.authorization;
  if (typeof header !== 'string' || !/^Basic /i.test(header)) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * Who may use the viewer, for pages, JSON endpoints, actions and the socket.io handshake alike:
 * `authorize(req)` if given, else basic credentials, else `allowUnauthenticated`, else nobody.
 */
export async function checkAccess(req: IncomingMessage, options: ResolvedRouterOptions): Promise<AccessDecision> {
  if (options.authorize) {
    let answer: unknown = false;
    try {
      answer = await options.authorize(req);
    } catch {
      answer = false;
    }
    if (answer === true) return { ok: true, actor: null };
    const actor = (answer as { actor?: unknown } | null)?.actor;
    if (typeof answer === 'object' && answer !== null && typeof actor === 'string' && actor.length > 0) return { ok: true, actor };
    const malformed = answer !== false && answer !== undefined && answer !== null;
    return {
      ok: false,
      status: 403,
      message: malformed
        ? 'Forbidden: the authorize() check of this durable-flow viewer returned neither true, false nor { actor: non-empty string }; refused.'
        : 'Forbidden: the authorize() check of this durable-flow viewer refused the request.',
    };
  }
  if (options.basicAuth) {
    const given = basicCredentials(req);
    // Both compared, always, so timing says nothing about which one was wrong.
    const userOk = safeEqual(given?.username ?? '', options.basicAuth.username);
    const passOk = safeEqual(given?.password ?? '', options.basicAuth.password);
    if (given && userOk && passOk) return { ok: true, actor: given.username };
    return {
      ok: false,
      status: 401,
      message: 'Authentication required: this durable-flow viewer uses HTTP basic authentication.',
      headers: { 'WWW-Authenticate': 'Basic realm="durable-flow", charset="UTF-8"' },
    };
  }
  if (options.allowUnauthenticated) return { ok: true, actor: null };
  return { ok: false, status: 403, message: DENIED_BY_DEFAULT };
}

/**
 * Same-origin check for state-changing requests and the socket.io handshake: an Origin (or, without
 * one, a Referer) naming another host is refused. Requests that carry neither (curl, server-to-server)
 * pass this check and still need the CSRF token.
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const host = req.headers['x-forwarded-host'] ?? req.headers.host;
  const source = req.headers.origin ?? req.headers.referer;
  if (typeof source !== 'string' || source === 'null') return source === undefined;
  try {
    return new URL(source).host === String(host).split(',')[0]!.trim();
  } catch {
    return false;
  }
}
