import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../config.js';
import { isLsn } from '../read/replica.js';
import type { ReadRouting } from '../read/replica.js';
import { cookies } from './csrf.js';

/** The primary's WAL position after this browser's last action (read/replica.ts). */
const COOKIE = 'durable_flow_lsn';

/**
 * The viewer's reads of a GET on the replica of `viewerDatabaseUrl` once it has replayed this
 * browser's last action (its cookie) and what this process has shown or written, else on the
 * primary. Without a replica: nothing to do.
 */
export function readReplica(routing: ReadRouting) {
  return (req: Request, _res: Response, next: NextFunction): void => {
    if (!routing.hasReplica || (req.method !== 'GET' && req.method !== 'HEAD')) return next();
    const lsn = cookies(req)[COOKIE];
    routing.withReplica(isLsn(lsn) ? lsn : null, () => next()).catch(next);
  };
}

/**
 * After a viewer action: the primary's WAL position, for this browser's next pages (a cookie scoped to
 * the viewer) and for this process. The action is done: a failure here is logged, never answered.
 */
export async function rememberWrite(routing: ReadRouting, req: Request, res: Response, logger: Logger): Promise<void> {
  if (!routing.hasReplica) return;
  try {
    const lsn = await routing.written();
    if (lsn) res.cookie(COOKIE, lsn, { httpOnly: true, sameSite: 'lax', secure: req.secure, path: req.baseUrl || '/' });
  } catch (error) {
    logger.warn('Could not read the primary WAL position after a viewer action: its next page may read the replica before it has the change', { error: (error as Error).message });
  }
}
