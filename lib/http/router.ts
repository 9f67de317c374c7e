import { createRequire } from 'node:module';
import path from 'node:path';
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { DurableFlowError } from '../errors.js';
import type { DurableFlow } from '../flow.js';
import { packageDir } from '../paths.js';
import type { RunStatus } from '../types.js';
import { checkAccess } from './auth.js';
import { csrfToken, csrfValid } from './csrf.js';
import { ingestHandler } from './ingest.js';
import type { ResolvedRouterOptions } from './options.js';
import { decodeCursor, isBigintId } from './cursor.js';
import { RUN_STATUSES } from './queries.js';
import type { RunFilter, ViewerQueries } from './queries.js';
import { render, timelineChart } from './render.js';
import { runIdOfSegment, runSegment } from './run-path.js';

/** The signed-in user of each request the access check let in (null: allowed, no user named). */
const actors = new WeakMap<Request, string | null>();

/** Where the browser finds the live channel (set by flow.attachLive). */
export interface LiveInfo {
  path: string;
  namespace: string;
}

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function wantsJson(req: Request): boolean {
  return req.path.startsWith('/api/') || req.get('accept')?.includes('application/json') === true;
}

function text(value: unknown, what: string, max: number): string | null {
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
function onlyParameters(query: Request['query'], allowed: readonly string[]): void {
  for (const key of Object.keys(query)) {
    if (!allowed.includes(key)) {
      throw new HttpError(400, `Unknown query parameter "${key.slice(0, 40)}": this list accepts ${allowed.join(', ')}`);
    }
  }
}

const RUN_LIST_PARAMETERS = ['status', 'workflow', 'q', 'before', 'limit', 'fragment'];
const EVENT_LIST_PARAMETERS = ['name', 'before', 'fragment'];

/** The run id of a URL; one that no run can have (too long, U+0000) is a 404 without asking Postgres. */
function runIdParam(req: Request): string {
  const runId = runIdOfSegment(String(req.params.runId));
  if (runId.length > 255 || runId.includes('\u0000')) throw new HttpError(404, 'No run with this id: run ids are at most 255 characters, without U+0000');
  return runId;
}

function runFilter(query: Request['query'], pageSize: number): RunFilter {
  onlyParameters(query, RUN_LIST_PARAMETERS);
  const status = text(query.status, 'status', 20);
  if (status !== null && !RUN_STATUSES.includes(status as RunStatus)) {
    throw new HttpError(400, `Invalid status: expected one of ${RUN_STATUSES.join(', ')}`);
  }
  const before = text(query.before, 'cursor', 80);
  const cursor = before === null ? null : decodeCursor(before);
  if (before !== null && !cursor) throw new HttpError(400, 'Invalid cursor: use the link of the previous page');
  const limitText = query.limit;
  const limit = limitText === undefined || limitText === '' ? pageSize : typeof limitText === 'string' && /^\d{1,3}$/.test(limitText) ? Number(limitText) : NaN;
  if (!(limit >= 1 && limit <= 500)) throw new HttpError(400, 'Invalid limit: expected an integer from 1 to 500');
  return {
    status: status as RunStatus | null,
    workflow: text(query.workflow, 'workflow', 255),
    q: text(query.q, 'search text', 200),
    before: cursor,
    limit,
  };
}

/** What a 4xx error of Express or its body parser means, in words that say what to change. */
function clientError(error: { status: number; type?: string }): { status: number; message: string } {
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

/**
 * The viewer and event-ingest router. Every route but the signed ingest goes through the access check
 * first (so a route added later is protected too); actions are POST only, CSRF-checked and same-origin.
 */
export function createRouter(
  flow: DurableFlow,
  options: ResolvedRouterOptions,
  queries: ViewerQueries,
  live: () => LiveInfo | null,
): Router {
  const router = express.Router();
  const publicDir = packageDir('public', 'viewer.js');
  // The browser client ships inside the socket.io package (client-dist/), served from here: no CDN.
  const socketClient = path.join(path.dirname(createRequire(import.meta.url).resolve('socket.io/package.json')), 'client-dist', 'socket.io.min.js');

  router.use((_req, res, next) => {
    res.set({
      'Content-Security-Policy': CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'same-origin',
      'X-Frame-Options': 'DENY',
      'Cache-Control': 'no-store',
    });
    next();
  });

  router.post('/events', ingestHandler(flow, options));

  router.use((req, res, next) => {
    checkAccess(req, options).then((decision) => {
      if (decision.ok) {
        actors.set(req, decision.actor);
        return next();
      }
      if (decision.headers) res.set(decision.headers);
      if (wantsJson(req)) res.status(decision.status).json({ error: decision.message });
      else res.status(decision.status).type('text/plain').send(decision.message);
    }, next);
  });

  router.use('/assets', express.static(publicDir, { index: false, fallthrough: true, maxAge: 0 }));
  router.get('/assets/socket.io.min.js', (_req, res) => res.type('application/javascript').sendFile(socketClient));

  const page = async (req: Request, res: Response, view: string, data: Record<string, unknown>, fragment?: string) => {
    const base = req.baseUrl;
    const info = live();
    const csrf = csrfToken(req, res, await queries.csrfKey(), actors.get(req) ?? null);
    const common = { base, title: options.title, csrf, socketPath: info?.path ?? '', socketNamespace: info?.namespace ?? '' };
    const html = await render(fragment && req.query.fragment === fragment ? `partials/${fragment}` : view, { ...common, ...data });
    res.type('html').send(html);
  };

  const handle =
    (fn: (req: Request, res: Response) => Promise<void>) =>
    (req: Request, res: Response, next: NextFunction): void => {
      fn(req, res).catch(next);
    };

  // ---- Runs -------------------------------------------------------------------------------------
  const runsData = async (req: Request) => {
    const filter = runFilter(req.query, options.pageSize);
    const [page, counts, names] = await Promise.all([
      queries.listRuns(filter),
      queries.countByStatus(filter.workflow),
      queries.workflowNames(),
    ]);
    const workflows = [...new Set([...flow.definitions.keys(), ...names])].sort();
    return { filter, page, counts, workflows, statuses: RUN_STATUSES, pageSize: options.pageSize };
  };
  router.get('/', handle(async (req, res) => page(req, res, 'runs', { ...(await runsData(req)), live: 'runs' }, 'runs-list')));
  router.get('/api/runs', handle(async (req, res) => {
    const { page: runs, counts } = await runsData(req);
    res.json({ runs: runs.runs, next: runs.next, counts });
  }));

  // ---- One run ----------------------------------------------------------------------------------
  const runData = async (req: Request) => {
    const runId = runIdParam(req);
    const timeline = await flow.timeline(runId);
    if (!timeline) throw new HttpError(404, `No run with id "${runId.slice(0, 200)}"`);
    const related = await queries.runSummaries([...(timeline.run.parentRunId ? [timeline.run.parentRunId] : []), ...timeline.run.childRunIds]);
    return { timeline, related, chart: timelineChart(timeline) };
  };
  router.get('/runs/:runId', handle(async (req, res) => {
    const data = await runData(req);
    await page(req, res, 'run', { ...data, live: `run:${data.timeline.run.runId}` }, 'run-body');
  }));
  router.get('/api/runs/:runId', handle(async (req, res) => {
    const { timeline } = await runData(req);
    res.json(timeline);
  }));

  // ---- Actions (POST only, CSRF) ----------------------------------------------------------------
  const form = express.urlencoded({ extended: false, limit: '200kb' });
  const action =
    (fn: (req: Request) => Promise<string>) =>
    (req: Request, res: Response, next: NextFunction): void => {
      queries
        .csrfKey()
        .then(async (key) => {
          if (!csrfValid(req, key, actors.get(req) ?? null)) {
            const message = 'Forbidden: missing or invalid CSRF token, or a request from another origin';
            if (wantsJson(req)) res.status(403).json({ error: message });
            else res.status(403).type('text/plain').send(message);
            return;
          }
          const location = await fn(req);
          if (wantsJson(req)) res.json({ ok: true });
          else res.redirect(303, `${req.baseUrl}${location}`);
        })
        .catch(next);
    };
  router.post('/runs/:runId/cancel', form, action(async (req) => {
    const runId = runIdParam(req);
    await flow.cancel(runId, { reason: 'Cancelled from the viewer' });
    return `/runs/${runSegment(runId)}`;
  }));
  router.post('/runs/:runId/retry', form, action(async (req) => {
    const runId = runIdParam(req);
    await flow.retry(runId);
    return `/runs/${runSegment(runId)}`;
  }));
  router.post('/actions/send-event', form, action(async (req) => {
    const body = req.body as Record<string, unknown>;
    const name = text(body.name, 'event name', 255);
    if (!name) throw new HttpError(400, 'An event needs a name');
    const payloadText = text(body.payload, 'payload', 100_000) ?? '{}';
    let payload: unknown;
    try {
      payload = JSON.parse(payloadText);
    } catch {
      throw new HttpError(400, 'The payload is not valid JSON');
    }
    const id = text(body.id, 'event id', 255);
    await flow.notify(name, payload, { ...(id ? { id } : {}), source: 'viewer' });
    return '/events';
  }));
  router.all(['/runs/:runId/cancel', '/runs/:runId/retry', '/actions/send-event'], (_req, res) => {
    res.set('Allow', 'POST').status(405).type('text/plain').send('Method not allowed: actions are POST forms with a CSRF token');
  });

  // ---- Workflows --------------------------------------------------------------------------------
  const workflowsData = async () => {
    const stats = await queries.workflowStats();
    const names = [...new Set([...flow.definitions.keys(), ...stats.keys()])].sort();
    return names.map((name) => ({
      name,
      registered: flow.definitions.has(name),
      queue: flow.definitions.get(name)?.queue ?? null,
      counts: stats.get(name) ?? Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])),
      total: Object.values(stats.get(name) ?? {}).reduce((a, b) => a + b, 0),
    }));
  };
  router.get('/workflows', handle(async (req, res) => page(req, res, 'workflows', { workflows: await workflowsData(), statuses: RUN_STATUSES, live: 'workflows' }, 'workflows-list')));
  router.get('/api/workflows', handle(async (_req, res) => {
    res.json({ workflows: await workflowsData() });
  }));

  // ---- Events -----------------------------------------------------------------------------------
  const eventsData = async (req: Request) => {
    onlyParameters(req.query, EVENT_LIST_PARAMETERS);
    const name = text(req.query.name, 'event name', 255);
    const before = text(req.query.before, 'cursor', 20);
    if (before !== null && !isBigintId(before)) throw new HttpError(400, 'Invalid cursor: use the link of the previous page');
    return { name, ...(await queries.listEvents({ name, beforeId: before, limit: options.pageSize })) };
  };
  router.get('/events', handle(async (req, res) => page(req, res, 'events', { ...(await eventsData(req)), live: 'events' }, 'events-list')));
  router.get('/api/events', handle(async (req, res) => {
    const { events, next } = await eventsData(req);
    res.json({ events, next });
  }));

  // ---- Errors -----------------------------------------------------------------------------------
  router.use((req, res) => {
    if (wantsJson(req)) res.status(404).json({ error: 'Not found' });
    else res.status(404).type('text/plain').send('Not found');
  });
  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    let status = 500;
    let message = 'Internal error';
    if (error instanceof HttpError) {
      status = error.status;
      message = error.message;
    } else if (error instanceof DurableFlowError) {
      status = error.code === 'RUN_NOT_FOUND' ? 404 : error.code === 'INVALID_STATE' ? 409 : error.code === 'INVALID_ARGUMENT' || error.code === 'NOT_SERIALIZABLE' ? 400 : 500;
      if (status !== 500) message = error.message;
    } else if (typeof (error as { status?: number }).status === 'number' && (error as { status: number }).status < 500) {
      ({ status, message } = clientError(error as { status: number; type?: string }));
    }
    if (status === 500) flow.options.logger.error('Viewer request failed', { path: req.path, error: (error as Error)?.message });
    if (res.headersSent) return;
    if (wantsJson(req)) res.status(status).json({ error: message });
    else res.status(status).type('text/plain').send(message);
  });
  return router;
}
