import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { sameOrigin } from './auth.js';

const COOKIE = 'durable_flow_csrf';
const NONCE = /^[A-Za-z0-9_-]{43}$/;

export function cookies(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    try {
      out[key] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      // a malformed cookie value is ignored
    }
  }
  return out;
}

/**
 * `<nonce>.<HMAC(key, nonce | identity)>`. A page on a sibling subdomain can set the cookie (cookies
 * are shared across a site), so a plain double-submit, which only compares cookie and form field, is
 * forged by setting both. Without the key no token fits a nonce; and a pair a user obtained for
 * themselves does not fit another user's identity. `identity` is the signed-in user (null: none known).
 */
function tokenFor(key: string, nonce: string, identity: string | null): string {
  const mac = createHmac('sha256', key)
    .update(`durable-flow csrf v1\u0000${nonce}\u0000${identity === null ? '-' : `+${identity}`}`)
    .digest('base64url');
  return `${nonce}.${mac}`;
}

/**
 * The CSRF token of this browser for its signed-in user: a random nonce in a SameSite=Strict, HttpOnly
 * cookie scoped to the viewer, bound to the user by the token every action form echoes. Stateless
 * beyond the key, which every web process reads from the database, so any number of them agree.
 */
export function csrfToken(req: Request, res: Response, key: string, identity: string | null): string {
  let nonce = cookies(req)[COOKIE];
  if (!nonce || !NONCE.test(nonce)) {
    nonce = randomBytes(32).toString('base64url');
    res.cookie(COOKIE, nonce, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: req.baseUrl || '/' });
  }
  return tokenFor(key, nonce, identity);
}

function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/**
 * An action request comes from this origin and carries (form field `_csrf` or header `X-CSRF-Token`)
 * the token of its cookie's nonce for the user signed in now.
 */
export function csrfValid(req: Request, key: string, identity: string | null): boolean {
  if (!sameOrigin(req)) return false;
  const nonce = cookies(req)[COOKIE];
  const body = req.body as Record<string, unknown> | undefined;
  const sent = (typeof body?._csrf === 'string' ? body._csrf : undefined) ?? req.get('x-csrf-token');
  return typeof nonce === 'string' && NONCE.test(nonce) && typeof sent === 'string' && safeEqual(sent, tokenFor(key, nonce, identity));
}
