import { createRequire } from 'node:module';
import path from 'node:path';
import express from 'express';
import type { NextFunction, Request, Response, Router } from 'express';
import { DurableFlowError } from '../errors.js';
import type { ViewerBackend, ViewerReads } from './backend.js';
import { packageDir } from '../paths.js';
import { checkAccess } from './auth.js';
import { csrfToken, csrfValid } from './csrf.js';
import { FormError, asFormError, formFields, formJson, formText } from './forms.js';
import type { FormState } from './forms.js';
import type { TimelineLog } from '../read/timeline.js';
import { ingestHandler } from './ingest.js';
import type { LiveChannel } from './live.js';
import type { ResolvedRouterOptions } from './options.js';
import { isBigintId } from '../read/cursor.js';
import { EVENT_LIST_PARAMETERS, HttpError, clientError, integerParameter, onlyParameters, runFilter, runIdParam, stepOffsetParam, text, wantsJson } from './params.js';
import { CHILD_COUNT_CAP, RUN_STATUSES } from '../read/lists.js';
import { timelineChart } from './chart.js';
import { render } from './render.js';
import { readReplica, rememberWrite } from './replica.js';
import { RUN_PAGE_HELPERS } from './run-page.js';
import { runSegment } from './run-path.js';
import { OPERATOR_FORMS, mountOperatorPages, runPanels } from './operator-page.js';
import { mountSchedulePage } from './schedules-page.js';
import { mountMetricsPage } from './metrics-page.js';
import { LOG_PAGE, STEP_PAGE, VIEW_LIMITS, cutOf, parseValuePath, sendWhole, withHrefs } from './values.js';
import { workflowLimits } from './limits.js';
import { waitingReason } from './waiting.js';

/** The signed-in user of each request the access check let in (null: allowed, no user named). */
const actors = new WeakMap<Request, string | null>();

/** The live channel (set by flow.attachLive), and which viewer this router's pages name there. */
export interface LiveInfo {
  channel: LiveChannel;
  viewer: string;
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

/**
 * The viewer and event-ingest router. Every route but the signed ingest goes through the access check
 * first (so a route added later is protected too); actions are POST only, CSRF-checked and same-origin.
 */
export function createRouter(
  flow: ViewerBackend,
  options: ResolvedRouterOptions,
  reads: ViewerReads,
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

  // The live channel's polling under this mount, past the access check above (live.ts).
  router.all('/socket.io/', (req, res, next) => {
    const channel = live()?.channel;
    if (!channel?.serve) return next();
    // A page served before a restart polls first: its mount is remembered for the upgrade that follows.
    channel.pathFor(req.baseUrl);
    channel.serve(req, res);
  });

  router.use('/assets', express.static(publicDir, { index: false, fallthrough: true, maxAge: 0 }));
  router.get('/assets/socket.io.min.js', (_req, res) => res.type('application/javascript').sendFile(socketClient));
  router.use(readReplica(reads.routing)); // pages and API reads on the replica when it is fresh enough (replica.ts)

  // One clock for a page's times: the database's as the flow sees it (time.ts).
  const flowNow = () => Date.now() + flow.clockOffsetMs;
  const page = async (req: Request, res: Response, view: string, data: Record<string, unknown>, fragment?: string) => {
    const base = req.baseUrl;
    const info = live();
    const csrf = csrfToken(req, res, await reads.csrfKey(), actors.get(req) ?? null);
    const socket = info ? { socketPath: info.channel.pathFor(base), socketNamespace: info.channel.handle.namespace.name, socketViewer: info.viewer } : { socketPath: '', socketNamespace: '', socketViewer: '' };
    const common = { base, title: options.title, now: flowNow(), csrf, ...socket };
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
    const [listed, counts, names, pauses] = await Promise.all([
      reads.listRuns(filter),
      reads.countByStatus(filter.workflow, filter.scope),
      reads.workflowNames(),
      reads.workflowPauses(),
    ]);
    // Each run not finished says why it waits, from its own columns (waiting.ts); the columns stay here.
    const now = flowNow();
    const runs = listed.runs.map(({ waitState, ...run }) => ({
      ...run,
      waiting: waitState ? waitingReason(run.workflow, waitState, { now, version: flow.version, workflowPaused: pauses.has(run.workflow) }) : null,
    }));
    const page = { ...listed, runs };
    const workflows = [...new Set([...flow.definitions.keys(), ...names])].sort();
    return { filter, page, counts, workflows, statuses: RUN_STATUSES, pageSize: options.pageSize, childCap: CHILD_COUNT_CAP };
  };
  router.get('/', handle(async (req, res) => page(req, res, 'runs', { ...(await runsData(req)), live: 'runs' }, 'runs-list')));
  router.get('/api/runs', handle(async (req, res) => {
    const { page: runs, counts } = await runsData(req);
    res.json({ runs: runs.runs, next: runs.next, counts, searched: runs.searched });
  }));

  // ---- One run ----------------------------------------------------------------------------------
  // Bounded (values.ts): previews of large values with links to them whole, and logs a page at a time.
  const runData = async (req: Request, logs: { after?: string; limit?: number } = {}) => {
    const runId = runIdParam(req);
    const timeline = await reads.timeline(runId, { ...VIEW_LIMITS, logs: logs.limit ?? VIEW_LIMITS.logs, logsAfter: logs.after, steps: STEP_PAGE, stepsOffset: stepOffsetParam(req.query.steps, STEP_PAGE) });
    if (!timeline) throw new HttpError(404, `No run with id "${runId.slice(0, 200)}"`);
    const cuts = withHrefs(req.baseUrl, runId, timeline.truncated ?? []);
    const logsHref = (after: string | null) =>
      after === null ? null : `${req.baseUrl}/${wantsJson(req) ? 'api/' : ''}runs/${runSegment(runId)}/logs?after=${after}${logs.limit ? `&limit=${logs.limit}` : ''}`;
    return { timeline: { ...timeline, truncated: cuts, logsNext: logsHref(timeline.logsNext ?? null) }, cuts };
  };
  // Why the run waits (waiting.ts): its columns and its key's counts (one indexed statement), its pending waits.
  const runWaiting = async (timeline: { run: { runId: string; workflow: string }; steps: { waits: { event: string; signal: string | null; branch: unknown; status: string }[] }[] }) => {
    const [detail, pauses] = await Promise.all([reads.runWaitDetail(timeline.run.runId), reads.workflowPauses()]);
    if (!detail) return null;
    const waits = timeline.steps.flatMap((s) => s.waits.filter((w) => w.status === 'pending'));
    return waitingReason(timeline.run.workflow, detail.state, { now: flowNow(), version: flow.version, workflowPaused: pauses.has(timeline.run.workflow), counts: detail, waits });
  };
  const pageData = async (req: Request) => {
    const data = await runData(req);
    const run = data.timeline.run;
    const related = await reads.runSummaries([...(run.parentRunId ? [run.parentRunId] : []), ...run.childRunIds]);
    const now = flowNow();
    const [panels, waiting] = await Promise.all([runPanels(reads, run.runId, run.workflow), runWaiting(data.timeline)]);
    return { ...data, ...RUN_PAGE_HELPERS, ...panels, waiting, related, now, stepPage: STEP_PAGE, chart: timelineChart(data.timeline, now), cut: cutOf(data.cuts) };
  };
  // A refused operator form (operator-page.ts) shows the run page again, at the action's address.
  const runPage = async (req: Request, res: Response, formState: FormState | null = null) => {
    const data = await pageData(req);
    const runId = data.timeline.run.runId;
    await page(req, res, 'run', { ...data, formState, live: `run:${runId}`, pageUrl: `${req.baseUrl}/runs/${runSegment(runId)}${data.timeline.stepsOffset ? `?steps=${data.timeline.stepsOffset}` : ''}` }, 'run-body');
  };
  router.get('/runs/:runId', handle(async (req, res) => runPage(req, res)));
  router.get('/api/runs/:runId', handle(async (req, res) => {
    const { timeline } = await runData(req);
    res.json({ ...timeline, waiting: await runWaiting(timeline) });
  }));
  // Every log of a run, in pages, oldest first; the steps come along for their names.
  const logsData = async (req: Request) => {
    onlyParameters(req.query, ['after', 'limit']);
    const after = text(req.query.after, 'log cursor', 20);
    if (after !== null && !isBigintId(after)) throw new HttpError(400, 'Invalid log cursor: use the link of the previous page');
    const limit = integerParameter(req.query.limit, 'limit', LOG_PAGE.default, LOG_PAGE.max);
    // A page of steps (the first) with every log of this page and the names of their steps (timeline.ts logSteps).
    const { timeline, cuts } = await runData(req, { ...(after ? { after } : {}), ...(req.query.limit ? { limit } : {}) });
    const stepNames = new Map(Object.entries(timeline.logSteps ?? {}));
    const logs = timeline.items.flatMap((item) => (item.type === 'log' ? [item.record as TimelineLog] : [])).sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || Number(a.id) - Number(b.id));
    return { run: timeline.run, logs, logCount: timeline.logCount ?? 0, next: timeline.logsNext, after, stepNames, cuts };
  };
  router.get('/runs/:runId/logs', handle(async (req, res) => {
    const data = await logsData(req);
    await page(req, res, 'logs', { ...data, cut: cutOf(data.cuts), live: '' });
  }));
  router.get('/api/runs/:runId/logs', handle(async (req, res) => {
    const { logs, logCount, next, cuts } = await logsData(req);
    res.json({ logs, logCount, next, truncated: cuts });
  }));
  // A value a page left out, whole: the JSON as stored (a log message: its text).
  router.get('/api/runs/:runId/values/:path', handle(async (req, res) => {
    onlyParameters(req.query, []);
    const path = parseValuePath(String(req.params.path));
    if (!path) throw new HttpError(404, 'No such value: use a link of the run page (run.input, run.output, run.error, steps.<id>.result …)');
    const runId = runIdParam(req);
    const value = await reads.value(runId, path);
    if (value === null) throw new HttpError(404, `Run "${runId.slice(0, 200)}" has no value ${String(req.params.path)}`);
    sendWhole(res, value, path.type, String(req.params.path));
  }));

  // ---- Actions (POST only, CSRF) ----------------------------------------------------------------
  // An action answers with where to go next (a redirect; JSON clients get `{ ok: true, ...json }`). A
  // FormError shows the form's page again, its content kept, with the status of the refusal.
  const form = express.urlencoded({ extended: false, limit: '200kb' });
  type Outcome = string | { location: string; json: Record<string, unknown> };
  const refill: Record<FormState['form'], (req: Request, res: Response, state: FormState) => Promise<void>> = {
    'start-run': async (req, res, state) =>
      page(req, res, 'workflows', { ...(await workflowsPage()), formState: state, live: 'workflows', pageUrl: `${req.baseUrl}/workflows` }),
    'send-event': async (req, res, state) => {
      const data = await eventsData(req, {});
      await page(req, res, 'events', { ...data, cut: cutOf(data.cuts), formState: state, live: 'events', pageUrl: `${req.baseUrl}/events` });
    },
    ...(Object.fromEntries(OPERATOR_FORMS.map((name) => [name, runPage])) as Record<(typeof OPERATOR_FORMS)[number], typeof runPage>),
  };
  const action =
    (fn: (req: Request) => Promise<Outcome>) =>
    (req: Request, res: Response, next: NextFunction): void => {
      reads
        .csrfKey()
        .then(async (key) => {
          if (!csrfValid(req, key, actors.get(req) ?? null)) {
            const message = 'Forbidden: missing or invalid CSRF token, or a request from another origin';
            if (wantsJson(req)) res.status(403).json({ error: message });
            else res.status(403).type('text/plain').send(message);
            return;
          }
          let outcome: Outcome;
          try {
            outcome = await fn(req);
            await rememberWrite(reads.routing, req, res, flow.options.logger);
          } catch (error) {
            if (!(error instanceof FormError) || wantsJson(req)) throw error;
            res.status(error.status);
            return refill[error.state.form](req, res, error.state);
          }
          const { location, json } = typeof outcome === 'string' ? { location: outcome, json: {} } : outcome;
          if (wantsJson(req)) res.json({ ok: true, ...json });
          else res.redirect(303, `${req.baseUrl}${location}`);
        })
        .catch(next);
    };
  // The signed-in user and the form's reason: what the audit trail records of a viewer action.
  const who = (req: Request, fallback?: string) => {
    const reason = text(formFields(req.body, ['reason']).reason, 'reason', 2000) ?? fallback;
    const actor = actors.get(req);
    return { ...(actor ? { actor } : {}), ...(reason ? { reason } : {}) };
  };
  router.post('/runs/:runId/cancel', form, action(async (req) => {
    const runId = runIdParam(req);
    await flow.cancel(runId, who(req, 'Cancelled from the viewer'));
    return `/runs/${runSegment(runId)}`;
  }));
  router.post('/runs/:runId/retry', form, action(async (req) => {
    const runId = runIdParam(req);
    await flow.retry(runId, who(req));
    return `/runs/${runSegment(runId)}`;
  }));
  // A run of a workflow this process registers, from the Workflows page; then its page.
  router.post('/actions/start-run', form, action(async (req) => {
    const fields = formFields(req.body, ['workflow', 'input']);
    const name = text(fields.workflow, 'workflow', 255);
    const definition = name === null ? undefined : flow.definitions.get(name);
    if (!definition) throw new HttpError(400, `No workflow "${(name ?? '').slice(0, 255)}" is registered in the process serving this viewer: start its runs from a process that registers it`);
    const input = formJson('start-run', fields, 'input', 'input');
    const runId = await flow.startRun(definition, input).catch((error: unknown) => {
      throw asFormError(error, 'start-run', fields);
    });
    return { location: `/runs/${runSegment(runId)}`, json: { runId } };
  }));
  // An event, as if a webhook sent it; then the Events page says which waits it matched.
  router.post('/actions/send-event', form, action(async (req) => {
    const fields = formFields(req.body, ['name', 'id', 'payload']);
    const name = formText('send-event', fields, 'name', 'event name', 255);
    if (!name) throw new FormError(400, { form: 'send-event', fields, message: 'An event needs a name' });
    const payload = formJson('send-event', fields, 'payload', 'payload');
    const id = formText('send-event', fields, 'id', 'event id', 255);
    const event = await flow.notify(name, payload, { ...(id ? { id } : {}), source: 'viewer' }).catch((error: unknown) => {
      throw asFormError(error, 'send-event', fields);
    });
    return {
      location: `/events?sent=${event.id}${event.duplicate ? '&duplicate=1' : ''}`,
      json: { event: { id: event.id, duplicate: event.duplicate, matchedWaits: event.matchedWaits } },
    };
  }));
  router.all(['/runs/:runId/cancel', '/runs/:runId/retry', '/actions/start-run', '/actions/send-event'], (_req, res) => {
    res.set('Allow', 'POST').status(405).type('text/plain').send('Method not allowed: actions are POST forms with a CSRF token');
  });

  mountSchedulePage(router, { schedules: flow.schedules, reads, now: flowNow, page, handle, action, form, who: (req) => who(req) });
  mountOperatorPages(router, { flow, reads, page, handle, action, form, who });
  mountMetricsPage(router, { metrics: flow.metrics, page, handle });

  // ---- Workflows --------------------------------------------------------------------------------
  const workflowsData = async () => {
    const [stats, pauses] = await Promise.all([reads.workflowStats(), reads.workflowPauses()]);
    const names = [...new Set([...flow.definitions.keys(), ...stats.keys(), ...pauses.keys()])].sort();
    return names.map((name) => ({
      name,
      paused: pauses.get(name) ?? null,
      registered: flow.definitions.has(name),
      queue: flow.definitions.get(name)?.queue ?? null,
      limits: workflowLimits(flow.definitions.get(name) ?? {}),
      counts: stats.get(name) ?? Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])),
      total: Object.values(stats.get(name) ?? {}).reduce((a, b) => a + b, 0),
    }));
  };
  // With the runs pinned to another version than this process's: they wait for a worker of theirs.
  const workflowsPage = async () => ({ workflows: await workflowsData(), statuses: RUN_STATUSES, formState: null, version: flow.version, pinned: await reads.pinnedElsewhere(flow.version) });
  router.get('/workflows', handle(async (req, res) => page(req, res, 'workflows', { ...(await workflowsPage()), live: 'workflows' }, 'workflows-list')));
  router.get('/api/workflows', handle(async (_req, res) => {
    res.json({ workflows: await workflowsData() });
  }));

  // ---- Events -----------------------------------------------------------------------------------
  // `sent` (and `duplicate`): the event the form just sent, shown with the waits it matched.
  const eventsData = async (req: Request, query: Request['query'] = req.query) => {
    onlyParameters(query, EVENT_LIST_PARAMETERS);
    const name = text(query.name, 'event name', 255);
    const before = text(query.before, 'cursor', 20);
    if (before !== null && !isBigintId(before)) throw new HttpError(400, 'Invalid cursor: use the link of the previous page');
    const sentId = text(query.sent, 'sent event', 20);
    if (sentId !== null && !isBigintId(sentId)) throw new HttpError(400, 'Invalid sent event: expected an event number');
    if (query.duplicate !== undefined && query.duplicate !== '1') throw new HttpError(400, 'Invalid duplicate: expected 1 or nothing');
    const [{ truncated, ...list }, sent] = await Promise.all([
      reads.listEvents({ name, beforeId: before, limit: options.pageSize }, VIEW_LIMITS),
      sentId === null ? null : reads.eventMatches(sentId),
    ]);
    // A payload over the page's limit is previewed; its whole is at /api/events/<id>/payload.
    const cuts = truncated.map((cut) => ({ ...cut, href: `${req.baseUrl}/api/events/${cut.path.split('.')[1]!}/payload` }));
    return { name, ...list, cuts, sent: sent && { ...sent, duplicate: query.duplicate === '1' }, formState: null };
  };
  router.get('/events', handle(async (req, res) => {
    const data = await eventsData(req);
    await page(req, res, 'events', { ...data, cut: cutOf(data.cuts), live: 'events' }, 'events-list');
  }));
  router.get('/api/events', handle(async (req, res) => {
    const { events, next, cuts, sent } = await eventsData(req);
    res.json({ events, next, truncated: cuts, ...(sent ? { sent } : {}) });
  }));
  router.get('/api/events/:eventId/payload', handle(async (req, res) => {
    onlyParameters(req.query, []);
    const id = String(req.params.eventId);
    const payload = isBigintId(id) ? await reads.eventPayload(id) : null;
    if (payload === null) throw new HttpError(404, `No event with id ${id.slice(0, 40)}`);
    sendWhole(res, payload, 'json', `event-${id}-payload`);
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
