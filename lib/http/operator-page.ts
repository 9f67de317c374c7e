import type { Request, RequestHandler, Response, Router } from 'express';
import { DurableFlowError } from '../errors.js';
import { BULK_ACTIONS } from '../operator/bulk-filter.js';
import { AUDIT_ACTIONS } from '../read/audit.js';
import type { AuditFilter } from '../read/audit.js';
import { isBigintId } from '../read/cursor.js';
import { FAILURE_SCAN } from '../read/failures.js';
import { RUN_STATUSES } from '../read/lists.js';
import type { AuditAction, BulkAction, BulkFilter, OperatorOptions, RunStatus } from '../types.js';
import type { ViewerBackend, ViewerReads } from './backend.js';
import { FormError, formFields, formJson, formText } from './forms.js';
import type { OperatorForm } from './forms.js';
import { HttpError, integerParameter, onlyParameters, runIdParam, text } from './params.js';
import { runSegment } from './run-path.js';

type Outcome = string | { location: string; json: Record<string, unknown> };

/** What the operator pages need of the router that mounts them (router.ts's own helpers). */
export interface OperatorPageDeps {
  flow: Pick<
    ViewerBackend,
    'definitions' | 'pause' | 'resume' | 'replay' | 'rerunFrom' | 'resolveWait' | 'completeStep' | 'pauseWorkflow' | 'resumeWorkflow' | 'bulk' | 'operation' | 'repin'
  >;
  reads: Pick<ViewerReads, 'audit' | 'failureGroups' | 'countByStatus' | 'workflowNames' | 'workflowPauses'>;
  page(req: Request, res: Response, view: string, data: Record<string, unknown>, fragment?: string): Promise<void>;
  handle(fn: (req: Request, res: Response) => Promise<void>): RequestHandler;
  /** A CSRF-checked POST action answering where to go next (router.ts). */
  action(fn: (req: Request) => Promise<Outcome>): RequestHandler;
  form: RequestHandler;
  /** The signed-in user and the form's reason (router.ts). */
  who(req: Request, fallback?: string): OperatorOptions;
}

/** The run page's forms that carry JSON, refilled on a refusal (router.ts shows the run page again). */
export const OPERATOR_FORMS: readonly OperatorForm[] = ['replay', 'rerun-from', 'resolve-wait', 'complete-step'];
/** Audit entries shown on a run page (the Audit page has them all). */
const RUN_AUDIT = 50;
const AUDIT_PAGE = 50;
/** A bulk operation's page reloads itself this often (seconds) while it runs: a meta refresh. */
export const OPERATION_REFRESH = 2;

/** An engine refusal as what the viewer answers: a refused form comes back filled in, a missing step is a 404. */
function refusal(error: unknown, form: OperatorForm | null, fields: Record<string, string>): unknown {
  if (!(error instanceof DurableFlowError)) return error;
  const status: Record<string, number> = {
    INVALID_ARGUMENT: 400, NOT_SERIALIZABLE: 400, INVALID_STATE: 409, WAIT_NOT_FOUND: 409, STEP_NOT_FOUND: 404, OPERATION_NOT_FOUND: 404,
  };
  const code = status[error.code];
  if (code === undefined) return error;
  return form === null || code === 404 ? new HttpError(code, error.message) : new FormError(code, { form, fields, message: error.message });
}

/** A JSON field whose emptiness means "nothing given" (the run's own input, no payload). */
function optionalJson(form: OperatorForm, fields: Record<string, string>, name: string, what: string): { given: boolean; value: unknown } {
  if ((fields[name] ?? '').trim() === '') return { given: false, value: undefined };
  return { given: true, value: formJson(form, fields, name, what) };
}

function stepField(form: OperatorForm, fields: Record<string, string>): string {
  const step = formText(form, fields, 'step', 'step name', 255);
  if (!step) throw new HttpError(400, 'The form names no step');
  return step;
}

/** What the run page shows of the operator tools: the run's audit entries, and whether its workflow is paused. */
export async function runPanels(reads: Pick<ViewerReads, 'audit' | 'workflowPauses'>, runId: string, workflow: string) {
  const [audit, pauses] = await Promise.all([reads.audit({ runId, limit: RUN_AUDIT }), reads.workflowPauses()]);
  return { audit: audit.entries, auditMore: audit.next !== null, workflowPause: pauses.get(workflow) ?? null };
}

/** The Audit page's filter from its query. */
function auditFilter(query: Request['query']): AuditFilter & { limit: number } {
  onlyParameters(query, ['run', 'workflow', 'actor', 'action', 'operation', 'before', 'limit']);
  const action = text(query.action, 'action', 40);
  if (action !== null && !(AUDIT_ACTIONS as readonly string[]).includes(action)) throw new HttpError(400, `Invalid action: expected one of ${AUDIT_ACTIONS.join(', ')}`);
  const before = text(query.before, 'cursor', 20);
  if (before !== null && !isBigintId(before)) throw new HttpError(400, 'Invalid cursor: use the link of the previous page');
  return {
    runId: text(query.run, 'run id', 255),
    workflow: text(query.workflow, 'workflow', 255),
    actor: text(query.actor, 'actor', 255),
    action: action as AuditAction | null,
    operationId: text(query.operation, 'operation id', 255),
    before,
    limit: integerParameter(query.limit, 'limit', AUDIT_PAGE, 500),
  };
}

/** A bulk request's action and filter (the confirm page's query, the action's form): workflow, status and errorCode. */
function bulkRequest(source: Record<string, unknown>): { action: BulkAction; filter: BulkFilter } {
  const action = text(source.action, 'action', 20);
  if (action === null || !(BULK_ACTIONS as readonly string[]).includes(action)) throw new HttpError(400, `Invalid action: expected one of ${BULK_ACTIONS.join(', ')}`);
  const status = text(source.status, 'status', 20);
  if (status !== null && !RUN_STATUSES.includes(status as RunStatus)) throw new HttpError(400, `Invalid status: expected one of ${RUN_STATUSES.join(', ')}`);
  const workflow = text(source.workflow, 'workflow', 255);
  const errorCode = text(source.errorCode, 'error code', 255);
  // Every run there is: not something a form offers. A filter names a workflow, a status or an error.
  if (workflow === null && status === null && errorCode === null) throw new HttpError(400, 'A bulk action needs a filter: a workflow, a status or an error code');
  const filter: BulkFilter = { ...(workflow ? { workflow } : {}), ...(status ? { status: status as RunStatus } : {}), ...(errorCode ? { errorCode } : {}) };
  return { action: action as BulkAction, filter };
}

/**
 * The viewer's operator tools: the run page's actions (pause, resume, replay, rerun from a step,
 * resolve a wait, complete a step: POST, CSRF-checked, each with a reason, audited with the signed-in
 * user), a workflow's pause and resume, bulk actions on a filtered run list after a confirm step
 * showing how many runs they touch, a bulk operation's progress page, failed runs grouped by error,
 * and the Audit page. Writes go through the flow's operator methods; reads through the read side.
 */
export function mountOperatorPages(router: Router, deps: OperatorPageDeps): void {
  const { flow, reads } = deps;
  const runPath = (runId: string) => `/runs/${runSegment(runId)}`;
  const post = (path: string, fn: (req: Request) => Promise<Outcome>) => router.post(path, deps.form, deps.action(fn));
  const actionPaths: string[] = [];
  const runAction = (verb: string, fn: (req: Request, runId: string) => Promise<Outcome>) => {
    actionPaths.push(`/runs/:runId/${verb}`);
    post(`/runs/:runId/${verb}`, (req) => fn(req, runIdParam(req)));
  };

  // ---- The run page's actions -------------------------------------------------------------------
  for (const verb of ['pause', 'resume'] as const) {
    runAction(verb, async (req, runId) => {
      const changed = await flow[verb](runId, deps.who(req));
      return { location: runPath(runId), json: { changed } };
    });
  }
  // A new run, then its page. An empty input is the run's own (as stored, even one too large to prefill).
  runAction('replay', async (req, runId) => {
    const fields = formFields(req.body, ['input', 'reason']);
    const input = optionalJson('replay', fields, 'input', 'input');
    const handle = await flow.replay(runId, { ...deps.who(req), ...(input.given ? { input: input.value } : {}) }).catch((error: unknown) => {
      throw refusal(error, 'replay', fields);
    });
    return { location: runPath(handle.runId), json: { runId: handle.runId } };
  });
  runAction('rerun-from', async (req, runId) => {
    const fields = formFields(req.body, ['step', 'input', 'reason']);
    const step = stepField('rerun-from', fields);
    const input = optionalJson('rerun-from', fields, 'input', 'input');
    const handle = await flow.rerunFrom(runId, step, { ...deps.who(req), ...(input.given ? { input: input.value } : {}) }).catch((error: unknown) => {
      throw refusal(error, 'rerun-from', fields);
    });
    return { location: runPath(handle.runId), json: { runId: handle.runId } };
  });
  runAction('resolve-wait', async (req, runId) => {
    const fields = formFields(req.body, ['step', 'payload', 'reason']);
    const step = stepField('resolve-wait', fields);
    const payload = optionalJson('resolve-wait', fields, 'payload', 'payload');
    await flow.resolveWait(runId, step, payload.value, deps.who(req)).catch((error: unknown) => {
      throw refusal(error, 'resolve-wait', fields);
    });
    return runPath(runId);
  });
  runAction('complete-step', async (req, runId) => {
    const fields = formFields(req.body, ['step', 'result', 'reason']);
    const step = stepField('complete-step', fields);
    const result = optionalJson('complete-step', fields, 'result', 'result');
    await flow.completeStep(runId, step, result.value, deps.who(req)).catch((error: unknown) => {
      throw refusal(error, 'complete-step', fields);
    });
    return runPath(runId);
  });

  // ---- Workflows: pause and resume --------------------------------------------------------------
  for (const verb of ['pause', 'resume'] as const) {
    actionPaths.push(`/workflows/:name/${verb}`);
    post(`/workflows/:name/${verb}`, async (req) => {
      const name = String(req.params.name);
      const changed = await (verb === 'pause' ? flow.pauseWorkflow(name, deps.who(req)) : flow.resumeWorkflow(name, deps.who(req))).catch((error: unknown) => {
        throw refusal(error, null, {});
      });
      return { location: '/workflows', json: { changed } };
    });
  }

  // ---- Versions: move the runs pinned to another version to this process's (flow.repin) ------------
  actionPaths.push('/versions/repin');
  post('/versions/repin', async (req) => {
    const fields = formFields(req.body, ['from', 'workflow', 'reason']);
    const from = text(fields.from, 'version', 200);
    if (from === null) throw new HttpError(400, 'The form names no version to move runs from');
    const workflow = text(fields.workflow, 'workflow', 255);
    const moved = await flow.repin(from, { ...deps.who(req), ...(workflow ? { workflow } : {}) }).catch((error: unknown) => {
      throw refusal(error, null, {});
    });
    return { location: '/workflows', json: { moved } };
  });

  // ---- Bulk: confirm, act, progress -------------------------------------------------------------
  // The confirm step: the action, the filter and how many runs it selects now (the run list's count,
  // read again here as the list reads it: countByStatus, every run of the workflow, children too).
  router.get('/bulk', deps.handle(async (req, res) => {
    onlyParameters(req.query, ['action', 'workflow', 'status', 'errorCode']);
    const { action, filter } = bulkRequest(req.query);
    if (filter.errorCode) throw new HttpError(400, 'A bulk action by error code is offered on the Failures page, with its count');
    const counts = await reads.countByStatus(filter.workflow ?? null, { kind: 'all' });
    const count = filter.status ? (counts[filter.status] ?? 0) : Object.values(counts).reduce((a, b) => a + b, 0);
    const back = `/?${new URLSearchParams({ ...(filter.workflow ? { workflow: filter.workflow } : {}), ...(filter.status ? { status: filter.status } : {}), children: '1' }).toString()}`;
    await deps.page(req, res, 'bulk-confirm', { action, filter, count, back, live: '' });
  }));
  actionPaths.push('/actions/bulk');
  post('/actions/bulk', async (req) => {
    const fields = formFields(req.body, ['action', 'workflow', 'status', 'errorCode']);
    const { action, filter } = bulkRequest(fields);
    const { operationId, total } = await flow.bulk(action, filter, deps.who(req)).catch((error: unknown) => {
      throw refusal(error, null, {});
    });
    return { location: `/operations/${encodeURIComponent(operationId)}`, json: { operationId, total } };
  });
  const operationOf = async (req: Request) => {
    onlyParameters(req.query, []);
    const id = String(req.params.operationId);
    return flow.operation(id).catch((error: unknown) => {
      throw refusal(error, null, {});
    });
  };
  router.get('/operations/:operationId', deps.handle(async (req, res) => {
    const operation = await operationOf(req);
    const running = operation.status === 'running';
    await deps.page(req, res, 'operation', { operation, refreshSeconds: running ? OPERATION_REFRESH : 0, live: '' });
  }));
  router.get('/api/operations/:operationId', deps.handle(async (req, res) => {
    res.json({ operation: await operationOf(req) });
  }));

  // ---- Failed runs grouped by error -------------------------------------------------------------
  const failuresData = async (req: Request) => {
    onlyParameters(req.query, ['workflow']);
    const workflow = text(req.query.workflow, 'workflow', 255);
    const [failures, names] = await Promise.all([reads.failureGroups(workflow), reads.workflowNames()]);
    return { workflow, ...failures, scanCap: FAILURE_SCAN, workflows: [...new Set([...flow.definitions.keys(), ...names])].sort() };
  };
  router.get('/failures', deps.handle(async (req, res) => {
    await deps.page(req, res, 'failures', { ...(await failuresData(req)), live: '' });
  }));
  router.get('/api/failures', deps.handle(async (req, res) => {
    const { workflow: _w, workflows: _ws, scanCap: _s, ...data } = await failuresData(req);
    res.json(data);
  }));

  // ---- The audit trail --------------------------------------------------------------------------
  router.get('/audit', deps.handle(async (req, res) => {
    const filter = auditFilter(req.query);
    await deps.page(req, res, 'audit', { filter, ...(await reads.audit(filter)), actions: AUDIT_ACTIONS, live: '' });
  }));
  router.get('/api/audit', deps.handle(async (req, res) => {
    res.json(await reads.audit(auditFilter(req.query)));
  }));

  router.all(actionPaths, (_req: Request, res: Response) => {
    res.set('Allow', 'POST').status(405).type('text/plain').send('Method not allowed: actions are POST forms with a CSRF token');
  });
}
