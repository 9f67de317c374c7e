import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import express from 'express';
import { afterAll, describe, expect, it } from 'vitest';
import { DurableFlow, signatureHeader } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { renderReadme } from '../../scripts/readme.js';
import { createDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';

const root = path.resolve(import.meta.dirname, '../..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
const databases: TestDatabase[] = [];
const closers: (() => Promise<unknown>)[] = [];

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  for (const db of databases) await db.drop();
});

/** A fresh database in DATABASE_URL, then the example module (its top-level code runs on import). */
async function runExample<T>(file: string, env: Record<string, string> = {}): Promise<T> {
  const db = await createDatabase('rdme');
  databases.push(db);
  process.env.DATABASE_URL = db.url;
  Object.assign(process.env, env);
  return (await import(path.join(root, 'examples/readme', file))) as T;
}

/** The base URL of `server` once it listens; the server and `flow` are closed after the test. */
function serve(server: http.Server, flow: DurableFlow): Promise<string> {
  closers.push(async () => {
    server.closeAllConnections();
    server.close();
    await flow.close();
  });
  return new Promise((resolve) => {
    const done = () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    if (server.listening) done();
    else server.once('listening', done);
  });
}

interface Block {
  check: string | undefined;
  lang: string;
  code: string;
}

function blocks(markdown: string): Block[] {
  const found: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)$/.exec(lines[i]!);
    if (!open) continue;
    const marker = /^<!-- check: (\S+) -->$/.exec(lines[i - 1] ?? '');
    const start = i;
    i++;
    while (i < lines.length && lines[i] !== '```') i++;
    found.push({ check: marker?.[1], lang: open[1]!, code: lines.slice(start + 1, i).join('\n') });
  }
  return found;
}

describe('the README', () => {
  it('is rendered from docs/README.template.md and the example files (run `npm run readme` after editing them)', () => {
    expect(readme).toBe(renderReadme());
  });

  it('ties every code block to a check that exists', () => {
    const all = blocks(readme);
    expect(all.length).toBeGreaterThan(15);
    const kinds = new Set(['ci', 'package', 'signature-format', 'curl', 'prompt']);
    for (const block of all) {
      expect(block.check, `a ${block.lang} block without a <!-- check: … --> line:\n${block.code.slice(0, 200)}`).toBeDefined();
      if (!kinds.has(block.check!)) expect(fs.existsSync(path.join(root, block.check!)), block.check).toBe(true);
    }
  });

  it('the quick-start and development commands are what CI runs', () => {
    const ci = fs.readFileSync(path.join(root, '.ci/run'), 'utf8');
    expect(ci).toContain('npm ci');
    expect(ci).toContain('npm test');
    expect(ci).toMatch(/npm start/);
    const commands = blocks(readme).filter((b) => b.check === 'ci').flatMap((b) => b.code.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean));
    const scripts = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).scripts;
    expect(commands).toEqual(expect.arrayContaining(['npm install', 'npm start', 'npm test']));
    for (const command of commands) {
      const script = /^npm run ([\w:-]+)/.exec(command)?.[1];
      if (script) expect(scripts[script], command).toBeDefined();
      else expect(['npm install', 'npm start', 'npm test'], command).toContain(command);
    }
    expect(scripts.start).toBeDefined();
    expect(scripts.test).toBeDefined();
  });

  it('`npm install durable-flow` installs this package: its name and entry points', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.name).toBe('durable-flow');
    expect(Object.keys(pkg.exports)).toEqual(['.', './testing']);
    expect(pkg.files).toEqual(expect.arrayContaining(['dist/lib', 'migrations', 'views', 'public']));
  });

  it('documents the signature header exactly as signatureHeader() builds it', () => {
    const format = blocks(readme).find((b) => b.check === 'signature-format')!.code;
    expect(format).toBe('DurableFlow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>');
    expect(signatureHeader('s'.repeat(16), 'body', 1700000000)).toMatch(/^t=1700000000,v1=[0-9a-f]{64}$/);
  });

  it('the agent prompt and llms.txt name only APIs that exist', () => {
    // Its own methods and those it inherits (the operator tools).
    const flowApi = new Set([DurableFlow.prototype, Object.getPrototypeOf(DurableFlow.prototype)].flatMap((p: object) => Object.getOwnPropertyNames(p)));
    const stepApi = ['run', 'sleep', 'sleepUntil', 'waitForEvent', 'sendEvent', 'invoke', 'invokeMany', 'waitForWorkflow', 'patched', 'waitForSignal', 'waitAny', 'waitAll'];
    const harnessApi = Object.getOwnPropertyNames(createTestHarness.prototype ?? {}).concat(
      Object.getOwnPropertyNames(Object.getPrototypeOf(createTestHarness({} as DurableFlow))),
    );
    for (const text of [blocks(readme).find((b) => b.check === 'prompt')!.code, fs.readFileSync(path.join(root, 'llms.txt'), 'utf8')]) {
      for (const [, name] of text.matchAll(/\bflow\.(\w+)\(/g)) expect(flowApi.has(name!), `flow.${name}`).toBe(true);
      for (const [, name] of text.matchAll(/\bstep\.(\w+)\(/g)) expect(stepApi, `step.${name}`).toContain(name);
      for (const [, name] of text.matchAll(/\bharness\.(\w+)\(/g)) expect(harnessApi, `harness.${name}`).toContain(name);
    }
  });
});

describe('the README examples run', () => {
  it("metrics: the flow's own registry, merged into the app's; its text", async () => {
    const { names, text } = await runExample<{ names: string[]; text: string }>('metrics.ts');
    expect(names).toEqual(expect.arrayContaining(['durable_flow_runs', 'durable_flow_step_duration_seconds', 'durable_flow_worker_slots']));
    expect(text).toContain('# TYPE durable_flow_event_resume_seconds histogram');
  });

  it('the opening example', async () => {
    const { result } = await runExample<{ result: unknown }>('opening.ts');
    expect(result).toEqual({ refunded: true, paymentId: 'pay_ord_42' });
  });

  it('installing into an Express app: a signed event wakes the refund', async () => {
    const secret = 'readme-secret-0123456789';
    const example = await runExample<{ server: http.Server; flow: DurableFlow }>('express-app.js', { PORT: '0', VIEWER_PASSWORD: 'pw', DURABLE_FLOW_EVENT_SECRET: secret });
    const url = await serve(example.server, example.flow);
    const created = await fetch(`${url}/refunds`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': 'k1' }, body: '{"orderId":"o1"}' });
    expect(created.status).toBe(202);
    const { runId } = (await created.json()) as { runId: string };
    await eventually(async () => (await example.flow.getRun(runId))?.status === 'waiting');
    const body = JSON.stringify({ name: 'refund_approved', payload: { orderId: 'o1' } });
    const sent = await fetch(`${url}/durable_flow/events`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'DurableFlow-Signature': signatureHeader(secret, body) }, body });
    expect(sent.status).toBe(202);
    expect(await example.flow.handle(runId).result({ timeout: '10 seconds' })).toEqual({ id: 'pay_o1' });
    expect((await fetch(`${url}/durable_flow/`)).status).toBe(401);
    expect((await fetch(`${url}/durable_flow/`, { headers: { Authorization: `Basic ${Buffer.from('ops:pw').toString('base64')}` } })).status).toBe(200);
  });

  it('workflows and runs', async () => {
    const { observed } = await runExample<{ observed: Record<string, unknown> }>('runs.ts');
    expect(observed).toMatchObject({ same: true, status: 'completed', steps: 1 });
    expect(observed.output).toMatchObject({ pdf: 'invoice-42.pdf', attempt: 1 });
  });

  it('versions: a pinned run of another version waits, then repin() moves it', async () => {
    const { observed } = await runExample<{ observed: Record<string, unknown> }>('versions.ts', { GIT_SHA: 'v2' });
    expect(observed).toEqual({ version: 'v2', before: { version: 'v1', pinned: 'v1', status: 'enqueued' }, moved: 1, output: 'v2 price' });
  });

  it('steps', async () => {
    const { flow, showcase } = await runExample<{ flow: DurableFlow; showcase: { start(input: unknown): Promise<{ runId: string }> } }>('steps.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    const run = await showcase.start({ userId: 1, items: [{ sku: 'a' }, { sku: 'b' }], renewsAt: '2020-01-01T00:00:00Z', orderId: 9 });
    await harness.drain();
    await harness.assertSleeping(run.runId, { step: 'cool_off' });
    await harness.travel('2 hours');
    await harness.drain();
    await harness.assertWaitingFor(run.runId, 'payment_succeeded', { match: { orderId: 9 } });
    await harness.resumeWorkflowsFor('payment_succeeded', { orderId: 9, amount: 30 });
    await harness.assertCompleted(run.runId, { user: 1, paid: 30, pages: [0, 1, 2] });
    await harness.assertLog(run.runId, { level: 'info', message: 'Order paid', data: { orderId: 9 } });
  });

  it('child workflows', async () => {
    const { flow, order } = await runExample<{ flow: DurableFlow; order: { start(input: unknown): Promise<{ runId: string }> } }>('children.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    const audit = await flow.startRun(flow.definitions.get('audit')!, {});
    const run = await order.start({ total: 25, lines: [{ sku: 'mug' }, { sku: 'tee' }], auditRunId: audit });
    await harness.drain();
    await harness.assertCompleted(run.runId, { payment: { chargeId: 'ch_25' }, lines: 2, audit: 'completed' });
  });

  it('tags: stored, inherited by a child, and filtered by in the JSON run list', async () => {
    const { flow, app, run, outcome, info } = await runExample<{
      flow: DurableFlow;
      app: express.Express;
      run: { runId: string };
      outcome: { runId: string; status: string };
      info: { tags: Record<string, string> };
    }>('tags.ts');
    expect(info.tags).toEqual({ customer: 'c1', plan: 'pro' });
    expect(outcome.status).toBe('completed');
    expect((await flow.getRun(outcome.runId))!.tags).toEqual({ customer: 'c1', plan: 'pro', stage: 'charge' });
    const server = http.createServer(app).listen(0, '127.0.0.1');
    const base = await serve(server, flow);
    const listed = (await (await fetch(`${base}/durable_flow/api/runs?tag=customer:c1&tag=plan:pro&children=1`)).json()) as { runs: { runId: string }[] };
    expect(listed.runs.map((r) => r.runId).sort()).toEqual([run.runId, outcome.runId].sort());
    const top = (await (await fetch(`${base}/durable_flow/api/runs?tag=stage:charge`)).json()) as { runs: unknown[] };
    expect(top.runs).toEqual([]);
  });

  it('deploying changed code: check(), then a patch gate for runs old and new', async () => {
    const { flow, report, blocked, sent, past, early } = await runExample<{
      flow: DurableFlow;
      report: { runId: string; ok: boolean }[];
      blocked: unknown[];
      sent: string[];
      past: { runId: string };
      early: { runId: string };
    }>('deploys.ts');
    closers.push(() => flow.close());
    expect(report.map((r) => [r.runId, r.ok]).sort()).toEqual([[past.runId, true], [early.runId, true]].sort());
    expect(blocked).toEqual([]);
    expect(sent).toEqual(['welcome → ann@example.com', 'reminder → ann@example.com', 'welcome → bob@example.com', 'survey → bob@example.com']);
    const harness = createTestHarness(flow);
    await harness.assertCompleted(past.runId);
    await harness.assertCompleted(early.runId);
    await harness.assertStepResult(past.runId, 'patch:survey-instead-of-reminder', false);
    await harness.assertStepResult(early.runId, 'patch:survey-instead-of-reminder', true);
  });

  it('signals', async () => {
    const { flow, expense, decide } = await runExample<{
      flow: DurableFlow;
      expense: { start(input: unknown): Promise<{ runId: string }> };
      decide(runId: string, approved: boolean, by: string, requestId: string): Promise<boolean>;
    }>('signals.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    const big = await expense.start({ amount: 5000 });
    // Sent before the run started: buffered; the same request id again stores nothing.
    expect(await decide(big.runId, true, 'ana', 'req-1')).toBe(true);
    expect(await decide(big.runId, true, 'ana', 'req-1')).toBe(true);
    await harness.drain();
    expect((await flow.getRun(big.runId))!.status).toBe('waiting');
    expect(await decide(big.runId, true, 'bo', 'req-2')).toBe(true);
    await harness.drain();
    await harness.assertCompleted(big.runId, { approved: true, by: ['ana', 'bo'] });
    expect(await decide(big.runId, false, 'cy', 'req-3')).toBe(false);
    const ignored = await expense.start({ amount: 10 });
    await harness.drain();
    await harness.travel('3 days');
    await harness.drain();
    await harness.assertCompleted(ignored.runId, { approved: false, by: [] });
  });

  it('wait groups', async () => {
    const { flow, onboarding } = await runExample<{
      flow: DurableFlow;
      onboarding: { start(input: unknown): Promise<{ runId: string }> };
    }>('wait-groups.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    const ann = await onboarding.start({ userId: 1, name: 'ann' });
    const eve = await onboarding.start({ userId: 2, name: 'mallory' });
    await harness.drain();
    await flow.notify('proof_uploaded', { userId: 1, file: 'p.pdf' });
    await flow.notify('id_uploaded', { userId: 1, file: 'id.png' });
    await flow.notify('id_uploaded', { userId: 2, file: 'id2.png' });
    await flow.notify('proof_uploaded', { userId: 2, file: 'p2.pdf' });
    await harness.drain();
    // Ann's background check finished before anyone reviewed: that branch won.
    await harness.assertCompleted(ann.runId, { approved: true, docs: { id: { userId: 1, file: 'id.png' }, proof: { userId: 1, file: 'p.pdf' } } });
    await harness.assertCompleted(eve.runId, { approved: false, docs: { id: { userId: 2, file: 'id2.png' }, proof: { userId: 2, file: 'p2.pdf' } } });
    // A decision after the winner matches nothing.
    expect((await flow.notify('reviewed', { userId: 1, approved: false })).matchedWaits).toBe(0);
  });

  it('flow control', async () => {
    const { flow, shipping } = await runExample<{ flow: DurableFlow; shipping: { runId: string } }>('flow-control.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    await harness.drain();
    await harness.assertCancelled(shipping.runId);
    expect((await flow.getRun(shipping.runId))!.error).toMatchObject({ message: 'Cancelled by event "order_cancelled"' });
  });

  it('deadlines', async () => {
    const { flow, today, late, info } = await runExample<{
      flow: DurableFlow;
      today: { runId: string };
      late: { runId: string };
      info: { deadlineAt: Date; startBy: Date; createdAt: Date };
    }>('deadlines.ts');
    closers.push(() => flow.close());
    expect(info.deadlineAt.getTime() - info.createdAt.getTime()).toBeGreaterThanOrEqual(15 * 60_000 - 1000);
    expect(info.deadlineAt.getTime() - info.createdAt.getTime()).toBeLessThanOrEqual(15 * 60_000 + 1000);
    const harness = createTestHarness(flow);
    await harness.drain();
    await harness.assertStepAttempts(today.runId, 'fetch_rows', 1);
    await harness.travel('29 seconds');
    await harness.drain();
    await harness.assertStepAttempts(today.runId, 'fetch_rows', 1); // the backoff (about 1 s) is not used
    await harness.travel('1 second');
    await harness.drain();
    await harness.assertCompleted(today.runId, { rows: 3 });
    await harness.travel('5 minutes');
    await harness.drain();
    await harness.assertCancelled(late.runId);
    expect((await flow.getRun(late.runId))!.error).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
  });

  it('start control', async () => {
    const ex = await runExample<{
      flow: DurableFlow;
      first: { runId: string };
      again: { runId: string };
      limited: { runId: string };
      why: string;
      created: { runId: string };
      paid: { runId: string };
    }>('start-control.ts');
    closers.push(() => ex.flow.close());
    expect(ex.again.runId).toBe(ex.first.runId);
    expect(ex.why).toBe('RATE_LIMITED');
    expect((await ex.flow.getRun(ex.limited.runId))!.status).toBe('cancelled');
    expect(ex.paid.runId).toBe(ex.created.runId);
    expect((await ex.flow.getRun(ex.created.runId))!.input).toEqual({ accountId: 'acme', cause: 'order.paid' });
  });

  it('event triggers', async () => {
    const { flow, order } = await runExample<{ flow: DurableFlow; order: { id: string } }>('event-triggers.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    await harness.drain();
    const runs = async (workflow: string) =>
      (await flow.pool.query(`SELECT run_id, idempotency_key, input FROM durable_flow_workflow_runs WHERE workflow_name = $1 ORDER BY id`, [workflow])).rows;
    const [welcome] = await runs('welcome_email');
    expect(welcome.idempotency_key).toBe(`event:${order.id}`);
    await harness.assertCompleted(welcome.run_id, 'sent to ada@example.com');
    // The burst of three is one debounced run with the last payload, 30 seconds later.
    const syncs = await runs('sync_account');
    expect(syncs.map((r) => r.input)).toEqual([{ accountId: 'acme', change: 'owner' }]);
    await harness.travel('31 seconds');
    await harness.drain();
    await harness.assertCompleted(syncs[0].run_id, { accountId: 'acme', synced: true });
  });

  it('throttle', async () => {
    const { flow, runs, other } = await runExample<{ flow: DurableFlow; runs: { runId: string }[]; other: { runId: string } }>('throttle.ts');
    closers.push(() => flow.close());
    const harness = createTestHarness(flow);
    await harness.drain();
    const status = async () => Promise.all(runs.map(async (r) => (await flow.getRun(r.runId))!.status));
    expect(await status()).toEqual([...Array(10).fill('completed'), 'enqueued', 'enqueued']);
    await harness.assertCompleted(other.runId, { customerId: 'globex', synced: true });
    await harness.travel('1 minute');
    await harness.drain();
    expect(await status()).toEqual(Array(12).fill('completed'));
  });

  it('schedules', async () => {
    const { flow, schedules, now, backfilled } = await runExample<{
      flow: DurableFlow;
      schedules: { name: string }[];
      now: { runId: string };
      backfilled: { runId: string }[];
    }>('schedules.ts');
    closers.push(() => flow.close());
    expect(schedules.map((s) => s.name)).toEqual(['acme_sync', 'daily_report']);
    expect(backfilled).toHaveLength(4);
    expect((await flow.getRun(backfilled[1]!.runId))!.scheduledFor?.toISOString()).toBe('2026-06-01T00:15:00.000Z');
    expect((await flow.getRun(now.runId))!.status).toBe('completed');
    // The trigger, 4 backfilled slots, and the latest slot travel('1 day') passed.
    const { rows } = await flow.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'sync_account' AND scheduled_for IS NOT NULL`,
    );
    expect(rows[0]!.n).toBe(6);
  });

  it('operator tools', async () => {
    const { flow, trail, outputs, labels, again, fixed } = await runExample<{
      flow: DurableFlow;
      trail: { action: string; actor: string | null; reason: string | null; details: Record<string, unknown> }[];
      outputs: unknown[];
      labels: number[];
      again: { runId: string };
      fixed: { runId: string };
    }>('operator.ts');
    closers.push(() => flow.close());
    expect(trail.map((e) => [e.action, e.actor, e.reason])).toEqual([
      ['rerun_from', 'ana@example.com', 'carrier outage'],
      ['replay', 'ana@example.com', 'carrier outage'],
      ['complete_step', 'ana@example.com', 'carrier outage'],
    ]);
    expect(trail[0]!.details.newRunId).toBe(fixed.runId);
    expect(outputs).toEqual([
      { label: 'label-7', tracking: 'track-7', notified: true },
      { label: 'label-8', tracking: 'track-manual-8', notified: true },
      { label: 'label-9', tracking: 'track-9', notified: true },
      { label: 'label-8', tracking: 'track-8', notified: true },
      { label: 'label-8', tracking: 'track-8', notified: true },
    ]);
    // The replay bought a label again; the rerun from 'track' did not.
    expect(labels.sort()).toEqual([7, 8, 8, 9]);
    expect((await flow.getRun(fixed.runId))!.replayOf).toBe((await flow.getRun(again.runId))!.replayOf);
    expect((await flow.audit({ workflow: 'ship_order' })).map((e) => e.action)).toEqual([
      'rerun_from', 'replay', 'complete_step', 'resolve_wait', 'resume_workflow', 'pause_workflow', 'resume', 'pause',
    ]);
  });

  it('bulk operations', async () => {
    const { flow, total, finished } = await runExample<{ flow: DurableFlow; total: number; finished: { status: string; done: number; failed: number } }>('bulk.ts');
    closers.push(() => flow.close());
    expect(total).toBe(3);
    expect(finished).toMatchObject({ status: 'completed', done: 3, failed: 0 });
    const { rows } = await flow.pool.query<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = 'charge' GROUP BY status`,
    );
    expect(rows).toEqual([{ status: 'completed', n: 3 }]);
    expect((await flow.audit({ action: 'retry' })).every((e) => e.actor === 'ops@example.com' && e.operationId !== null)).toBe(true);
  });

  it('events', async () => {
    const { observed } = await runExample<{ observed: { first: { id: string }; again: { id: string; duplicate: boolean } } }>('events.ts');
    expect(observed.again).toMatchObject({ id: observed.first.id, duplicate: true });
  });

  it('workers', async () => {
    const { state } = await runExample<{ state: string }>('workers.ts');
    expect(state).toBe('stopped');
  });

  it('tracing with OpenTelemetry: the run and its steps in the trace of the start', async () => {
    const { tree, traces } = await runExample<{ tree: string[]; traces: number }>('tracing.ts');
    expect(tree).toEqual([
      'POST /checkout <- none',
      'durable_flow.run checkout <- POST /checkout',
      'durable_flow.step charge <- durable_flow.run checkout',
      'durable_flow.step receipt <- durable_flow.run checkout',
    ]);
    expect(traces).toBe(1);
  });

  it('live changes', async () => {
    const { flow, seen, unsubscribe } = await runExample<{ flow: DurableFlow; seen: { type: string }[]; unsubscribe: () => void }>('live-changes.ts');
    closers.push(() => flow.close());
    await flow.changesReady();
    await flow.notify('something', {});
    await eventually(() => seen.some((c) => c.type === 'workflow_event.created'));
    unsubscribe();
  });

  it('the viewer', async () => {
    const example = await runExample<{ server: http.Server; flow: DurableFlow }>('viewer.ts', { PORT: '0', VIEWER_PASSWORD: 'pw', DURABLE_FLOW_EVENT_SECRET: 'secret_of_at_least_16_chars' });
    const url = await serve(example.server, example.flow);
    expect((await fetch(`${url}/durable_flow/workflows`)).status).toBe(401);
    expect((await fetch(`${url}/durable_flow/workflows`, { headers: { Authorization: `Basic ${Buffer.from('ops:pw').toString('base64')}` } })).status).toBe(200);
  });

  it('signing an event from Node, and with curl', async () => {
    const db = await createDatabase('rdme');
    databases.push(db);
    const flow = new DurableFlow({ databaseUrl: db.url, logger: false });
    await flow.migrate();
    const app = express();
    app.use('/durable_flow', flow.router({ allowUnauthenticated: true, eventSecret: 'demo_event_secret_change_me' }));
    const url = await serve(http.createServer(app).listen(0, '127.0.0.1'), flow);
    const { status } = await runExample<{ status: number }>('sign.ts', {
      DURABLE_FLOW_URL: `${url}/durable_flow`,
      DURABLE_FLOW_EVENT_SECRET: 'demo_event_secret_change_me',
    });
    expect(status).toBe(202);
    // The curl block, as printed, pointed at this server instead of the demo's port.
    const script = blocks(readme).find((b) => b.check === 'curl')!.code.replace('http://127.0.0.1:4568', url);
    const { stdout } = await promisify(execFile)('bash', ['-c', script]);
    expect(JSON.parse(stdout)).toMatchObject({ events: [{ eventId: 'evt_42', name: 'order_paid', duplicate: true }] });
  });

  it('accepting a provider webhook', async () => {
    const { app, flow } = await runExample<{ app: express.Express; flow: DurableFlow }>('webhook.ts', { PAYMENTS_WEBHOOK_SECRET: 'whsec_provider' });
    const url = await serve(http.createServer(app).listen(0, '127.0.0.1'), flow);
    const body = JSON.stringify({ id: 'evt_p1', type: 'charge.succeeded', data: { amount: 10 } });
    const post = (header: string) => fetch(`${url}/webhooks/payments`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Provider-Signature': header }, body });
    expect((await post(signatureHeader('wrong_secret_value', body))).status).toBe(400);
    expect((await post(signatureHeader('whsec_provider', body))).status).toBe(200);
    const { rows } = await flow.pool.query(`SELECT name, payload FROM durable_flow_workflow_events WHERE event_id = 'evt_p1'`);
    expect(rows).toEqual([{ name: 'charge.succeeded', payload: { amount: 10 } }]);
  });
});
