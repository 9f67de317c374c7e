import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { sameOrigin } from './auth.js';

const COOKIE = 'durable_flow_csrf';
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

function cookies(req: Request): Record<string, string> {
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
 * The CSRF token of this browser (double-submit): a random value in a SameSite=Strict, HttpOnly cookie
 * scoped to the viewer, echoed by every action form. Stateless, so any number of web processes agree.
 */
export function csrfToken(req: Request, res: Response): string {
  const existing = cookies(req)[COOKIE];
  if (existing && TOKEN.test(existing)) return existing;
  const token = randomBytes(32).toString('base64url');
  res.cookie(COOKIE, token, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: req.baseUrl || '/' });
  return token;
}

function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

/** An action request carries the cookie's token (form field `_csrf` or header `X-CSRF-Token`) and comes from this origin. */
export function csrfValid(req: Request): boolean {
  if (!sameOrigin(req)) return false;
  const cookie = cookies(req)[COOKIE];
  const body = req.body as Record<string, unknown> | undefined;
  const sent = (typeof body?._csrf === 'string' ? body._csrf : undefined) ?? req.get('x-csrf-token');
  return typeof cookie === 'string' && TOKEN.test(cookie) && typeof sent === 'string' && safeEqual(cookie, sent);
}
