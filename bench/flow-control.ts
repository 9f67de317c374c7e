/**
 * What each flow-control option costs (issue 16), with 10,000 runs queued behind it, against no option.
 *
 * Claim-time options (concurrency limit, concurrency key, timeout, startBy; throttle: bench/throttle.ts):
 * the latency of one worker claim, `durable_flow_claim` asked for 1 run (the statement alone, one round
 * trip), that takes one due run of the option's workflow while N other runs of it are queued in the
 * state the option leaves them (made by start() and by committed claims, as workers would). Each claim
 * runs in a transaction rolled back after it, so every sample meets the same table.
 * Start-time options (singleton, rateLimit, debounce): the latency of one start(), one at a time, with N
 * runs of the option's workflow stored already (each start commits).
 * Event triggers (`on`): the latency of one flow.notify(), whose transaction inserts the triggered run (or a
 * pending start, for a workflow whose start needs its code), with N events already stored.
 * A fresh database per option. Figures are printed, never asserted.
 *
 *   npx tsx bench/flow-control.ts                 # N = 10,000, 500 claims / 300 starts per option
 *   npx tsx bench/flow-control.ts --runs=2000 --samples=100
 *   npx tsx bench/flow-control.ts --only=notify     # sections: claims, starts, notify
 */
import { performance } from 'node:perf_hooks';
import { DurableFlow } from '../lib/index.js';
import type { Workflow } from '../lib/index.js';
import { claimRunsSql } from '../lib/db/sql/claimRuns.js';
import { createDb, median, percentile, round } from './anchors/common.js';

const arg = (name: string, fallback: number, min: number): number => {
  const given = process.argv.find((a) => a.startsWith(`--${name}=`));
  const value = given ? Number(given.slice(name.length + 3)) : fallback;
  if (!Number.isInteger(value) || value < min) throw new Error(`--${name}: an integer of at least ${min}`);
  return value;
};
const N = arg('runs', 10_000, 100);
const CLAIMS = arg('samples', 500, 20);
const STARTS = Math.max(20, Math.round((CLAIMS * 3) / 5));
const KEYS = 100;
/** `--only=claims,starts,notify`: the sections to run (default all). */
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
const want = (section: 'claims' | 'starts' | 'notify') => !only || only.includes(section);

interface Figures {
  median: number;
  p99: number;
  samples: number;
}
const figures = (ms: number[]): Figures => ({ median: median(ms), p99: percentile(ms, 99), samples: ms.length });

/** A fresh database and flow for one option; dropped after. */
async function withFlow<T>(fn: (flow: DurableFlow) => Promise<T>): Promise<T> {
  const db = await createDb('df_flowctl');
  const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 20, version: 'bench' });
  try {
    await flow.migrate();
    return await fn(flow);
  } finally {
    await flow.close();
    await db.drop();
  }
}

/** Starts `count` runs of `wf` (inputs from `input`) a thousand at a time, as concurrent callers would. */
async function fill(wf: Workflow<any, any>, count: number, input: (i: number) => unknown, options: Record<string, unknown> = {}): Promise<void> {
  for (let from = 0; from < count; from += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, count - from) }, (_, i) => wf.start(input(from + i), options)));
  }
}

/** Committed claims by another worker until no run of `workflow` is due: the concurrency path leases what fits and parks the rest. */
async function settle(flow: DurableFlow, workflow: string): Promise<void> {
  const sql = claimRunsSql(flow.tables);
  for (;;) {
    await flow.pool.query(sql, [['default'], [workflow], 100, 'holder', 3_600_000, 0, flow.version]);
    const { rows } = await flow.pool.query(`SELECT count(*)::int AS n FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND wake_at <= now() AND status <> 'running'`, [workflow]);
    if (rows[0].n === 0) return;
  }
}

/** One running run of `workflow` finishes (the release-slot trigger makes the next parked run of its key due), as its worker's commit would. */
async function finishOne(flow: DurableFlow, workflow: string): Promise<void> {
  await flow.pool.query(
    `UPDATE durable_flow_workflow_runs SET status = 'completed', completed_at = now(), lease_owner = NULL, lease_expires_at = NULL, wake_at = NULL
     WHERE id = (SELECT id FROM durable_flow_workflow_runs WHERE workflow_name = $1 AND status = 'running' ORDER BY id LIMIT 1)`,
    [workflow],
  );
}

/** `samples` claims of 1 run of `workflow`, each rolled back; only the claim statement is timed. Each must lease a run. */
async function claims(flow: DurableFlow, workflow: string, samples = CLAIMS): Promise<Figures> {
  await flow.pool.query('VACUUM ANALYZE durable_flow_workflow_runs');
  const sql = claimRunsSql(flow.tables);
  const client = await flow.pool.connect();
  try {
    const ms: number[] = [];
    for (let i = 0; i < samples + 20; i++) {
      await client.query('BEGIN');
      const t = performance.now();
      const { rows } = await client.query(sql, [['default'], [workflow], 1, 'bench', 60_000, 0, flow.version]);
      const took = performance.now() - t;
      await client.query('ROLLBACK');
      if ((rows[0].runs as unknown[]).length !== 1) throw new Error(`The claim of ${workflow} leased ${(rows[0].runs as unknown[]).length} runs: the scenario is wrong`);
      if (i >= 20) ms.push(took); // the first 20: warm-up (plans, caches)
    }
    return figures(ms);
  } finally {
    client.release();
  }
}

/** `samples` start() calls of `wf`, one at a time, after a warm-up of 20. */
async function starts(flow: DurableFlow, wf: Workflow<any, any>, input: (i: number) => unknown, samples = STARTS): Promise<Figures> {
  await flow.pool.query('VACUUM ANALYZE durable_flow_workflow_runs');
  const ms: number[] = [];
  for (let i = 0; i < samples + 20; i++) {
    const t = performance.now();
    await wf.start(input(i));
    if (i >= 20) ms.push(performance.now() - t);
  }
  return figures(ms);
}

const queued = `${N.toLocaleString('en')} queued`;
const claimRows: [string, Figures | null][] = [];
const startRows: [string, Figures | null][] = [];
const log = (line: string) => process.stderr.write(`  ${line}\n`);
const began = performance.now();

// ---- Claim-time options ----------------------------------------------------------------------------
if (want('claims')) {
  claimRows.push([`no option (${queued}, due)`, await withFlow(async (flow) => {
    const wf = flow.workflow('plain', async () => undefined);
    await fill(wf, N, (i) => ({ i }));
    return claims(flow, 'plain');
  })]);
  log('claims: no option');
  // The same claim when the queue holds one due run (the shape the concurrency rows claim in: one woken run).
  claimRows.push([`no option (1 due, ${N.toLocaleString('en')} delayed)`, await withFlow(async (flow) => {
    const wf = flow.workflow('plain', async () => undefined);
    await fill(wf, N, (i) => ({ i }), { delay: '1 day' });
    await wf.start({ due: true });
    return claims(flow, 'plain');
  })]);
  log('claims: no option, 1 due');
  claimRows.push([`concurrency: { limit: 10 } (10 running, ${(N - 10).toLocaleString('en')} parked, 1 woken)`, await withFlow(async (flow) => {
    const wf = flow.workflow('limited', { concurrency: 10 }, async () => undefined);
    await fill(wf, N, (i) => ({ i }));
    await settle(flow, 'limited');
    await finishOne(flow, 'limited');
    return claims(flow, 'limited');
  })]);
  log('claims: concurrency limit');
  claimRows.push([`concurrency: { limit: 1, key } (${KEYS} keys: ${KEYS} running, ${(N - KEYS).toLocaleString('en')} parked, 1 woken)`, await withFlow(async (flow) => {
    const wf = flow.workflow('keyed', { concurrency: { limit: 1, key: (input: { k: number }) => String(input.k) } }, async () => undefined);
    await fill(wf, N, (i) => ({ k: i % KEYS }));
    await settle(flow, 'keyed');
    await finishOne(flow, 'keyed');
    return claims(flow, 'keyed');
  })]);
  log('claims: concurrency key');
  claimRows.push([`timeout: '1 hour' (${queued}, due)`, await withFlow(async (flow) => {
    const wf = flow.workflow('timed', { timeout: '1 hour' }, async () => undefined);
    await fill(wf, N, (i) => ({ i }));
    return claims(flow, 'timed');
  })]);
  log('claims: timeout');
  claimRows.push([`start(…, { startBy: '1 hour' }) (${queued}, due)`, await withFlow(async (flow) => {
    const wf = flow.workflow('bounded', async () => undefined);
    await fill(wf, N, (i) => ({ i }), { startBy: '1 hour' });
    return claims(flow, 'bounded');
  })]);
  log('claims: startBy');
  // `throttle`: bench/throttle.ts measures its claims (admitting, window full, beside a throttled backlog).
  claimRows.push(['throttle: see bench/throttle.ts', null]);
}

// ---- Start-time options ----------------------------------------------------------------------------
if (want('starts')) {
  startRows.push([`no option (${N.toLocaleString('en')} runs stored)`, await withFlow(async (flow) => {
    const wf = flow.workflow('plain', async () => undefined);
    await fill(wf, N, (i) => ({ i }));
    return starts(flow, wf, (i) => ({ i }));
  })]);
  log('starts: no option');
  startRows.push([`singleton: { mode: 'skip', key } (${N.toLocaleString('en')} unfinished keys; each start a new key)`, await withFlow(async (flow) => {
    const wf = flow.workflow('single', { singleton: { mode: 'skip', key: (input: { k: string }) => input.k } }, async () => undefined);
    await fill(wf, N, (i) => ({ k: `old-${i}` }));
    return starts(flow, wf, (i) => ({ k: `new-${i}` }));
  })]);
  log('starts: singleton');
  startRows.push([`rateLimit: { limit: 1,000,000, period: '1 hour' } (${N.toLocaleString('en')} starts in the window, one key)`, await withFlow(async (flow) => {
    const wf = flow.workflow('rated', { rateLimit: { limit: 1_000_000, period: '1 hour' } }, async () => undefined);
    await fill(wf, N, (i) => ({ i }));
    return starts(flow, wf, (i) => ({ i }));
  })]);
  log('starts: rateLimit, one key');
  startRows.push([`rateLimit: { limit: 1,000, period: '1 hour', key } (${N.toLocaleString('en')} starts over ${KEYS} keys)`, await withFlow(async (flow) => {
    const wf = flow.workflow('rated-keys', { rateLimit: { limit: 1000, period: '1 hour', key: (input: { k: number }) => String(input.k) } }, async () => undefined);
    await fill(wf, N, (i) => ({ k: i % KEYS }));
    return starts(flow, wf, (i) => ({ k: i % KEYS }));
  })]);
  log('starts: rateLimit, keyed');
  startRows.push([`debounce: { period: '1 hour', key } (${N.toLocaleString('en')} pending keys; each start folds into one)`, await withFlow(async (flow) => {
    const wf = flow.workflow('debounced', { debounce: { period: '1 hour', key: (input: { k: number }) => String(input.k) } }, async () => undefined);
    await fill(wf, N, (i) => ({ k: i }));
    return starts(flow, wf, (i) => ({ k: (i * 7919) % N }));
  })]);
  log('starts: debounce');
}

// ---- Event triggers: their cost is in the event's transaction (flow.notify), not in a claim -----------
/** `samples` notify() calls of `name`, one at a time, after a warm-up of 20. */
async function notifies(flow: DurableFlow, name: string, samples = STARTS): Promise<Figures> {
  await flow.pool.query('VACUUM ANALYZE durable_flow_workflow_events');
  const ms: number[] = [];
  for (let i = 0; i < samples + 20; i++) {
    const t = performance.now();
    await flow.notify(name, { i, account: `a${i % KEYS}` });
    if (i >= 20) ms.push(performance.now() - t);
  }
  return figures(ms);
}
const notifyRows: [string, Figures | null][] = [];
const fillEvents = async (flow: DurableFlow, name: string) => {
  for (let from = 0; from < N; from += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, N - from) }, (_, i) => flow.notify(name, { i: from + i, account: `a${(from + i) % KEYS}` })));
  }
};
if (want('notify')) {
  notifyRows.push([`no trigger (${N.toLocaleString('en')} events stored)`, await withFlow(async (flow) => {
    await fillEvents(flow, 'order.created');
    return notifies(flow, 'order.created');
  })]);
  log('notify: no trigger');
  notifyRows.push([`on: [{ event }] (each event inserts a run; ${N.toLocaleString('en')} triggered runs stored)`, await withFlow(async (flow) => {
    flow.workflow('welcome', { on: [{ event: 'order.created' }] }, async () => undefined);
    await flow.migrate();
    await fillEvents(flow, 'order.created');
    return notifies(flow, 'order.created');
  })]);
  log('notify: on');
  notifyRows.push([`on + debounce key (each event stores a pending start for a worker; ${N.toLocaleString('en')} pending)`, await withFlow(async (flow) => {
    flow.workflow('sync', { on: [{ event: 'order.created' }], debounce: { period: '1 hour', key: (input: { account: string }) => input.account } }, async () => undefined);
    await flow.migrate();
    await fillEvents(flow, 'order.created');
    return notifies(flow, 'order.created');
  })]);
  log('notify: on + debounce');
}

// ---- The table ---------------------------------------------------------------------------------------
/** One table: each row's median and p99, and its median against each of the first `baselines` rows (the "no option" ones). */
const table = (title: string, rows: [string, Figures | null][], baselines: number) => {
  if (rows.length === 0) return;
  const bases = rows.slice(0, baselines).map(([, f]) => f!);
  console.log(`\n${title}\n`);
  console.log(`| option | median (ms) | p99 (ms) | ${bases.map((_, i) => `median vs no option${baselines > 1 ? ` (${i === 0 ? `${queued} due` : '1 due'})` : ''}`).join(' | ')} |`);
  console.log(`|---|---:|---:|${bases.map(() => '---:').join('|')}|`);
  for (const [name, f] of rows) {
    const vs = bases.map((base) => (!f || f === base ? (f ? '' : '–') : `${round(f.median / base.median)}× (${f.median >= base.median ? '+' : ''}${round(f.median - base.median)} ms)`));
    console.log(`| ${name} | ${f ? round(f.median) : '–'} | ${f ? round(f.p99) : '–'} | ${vs.join(' | ')} |`);
  }
};
table(`Claim latency: one claim of 1 run, ${CLAIMS} samples each (the statement's round trip, rolled back)`, claimRows, 2);
table(`Start latency: one start() at a time, ${STARTS} samples each`, startRows, 1);
table(`Event triggers: one flow.notify() at a time, ${STARTS} samples each`, notifyRows, 1);
console.log(
  '\nFor scale (/work/shared/reference/perf-anchors.md, the same kind of machine): enqueue → start median 1.62 ms (p99 2.93) for graphile-worker, 2.37 ms (p99 5.50) for pg-boss with LISTEN/NOTIFY; a claim is one part of that path.',
);
console.log(`(${round((performance.now() - began) / 1000, 0)} s in all)`);
