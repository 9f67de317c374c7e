/**
 * The claim's cost of `throttle`: claim latency (one durable_flow_claim round trip, limit 20, as a worker
 * with concurrency 20 sends it) with N runs queued (default 10,000), side by side:
 *
 * - unthrottled: N runs of a workflow without limits, all due;
 * - throttled: N runs of one throttle key (20 per 200 ms) queued behind the throttle; the claims that
 *   admit the next 20 when the window has room, and the claims that find nothing to do meanwhile;
 * - unthrottled beside a throttled backlog: the runs of a workflow without limits, while N runs of another
 *   workflow wait behind their throttle (what the backlog costs everyone else).
 *
 * Claims are sent directly (no worker executes the runs), on a fresh database each. Figures are printed,
 * never asserted.
 *
 *   npx tsx bench/throttle.ts              # 10,000 runs (about a minute)
 *   npx tsx bench/throttle.ts --runs=1000
 */
import { DurableFlow } from '../lib/index.js';
import { createDb, median, percentile, round, sleep, vacuumAnalyze } from './anchors/common.js';

const arg = process.argv.find((a) => a.startsWith('--runs='));
const N = arg ? Number(arg.slice('--runs='.length)) : 10_000;
if (!Number.isInteger(N) || N < 1) throw new Error('--runs: a positive integer');
const LIMIT = 20;
const SAMPLES = 200;

interface Figures {
  claims: number[];
  /** Throttled: claims that admitted runs, and those that found the window full. */
  admitting?: number[];
  idle?: number[];
  /** The first claim of a throttled backlog (it parks the due backlog). */
  first?: number;
}

async function withFlow(prefix: string, setup: (flow: DurableFlow) => Promise<void>, measure: (claim: (workflows: string[]) => Promise<{ ms: number; n: number }>) => Promise<Figures>): Promise<Figures> {
  const db = await createDb(prefix);
  const flow = new DurableFlow({ databaseUrl: db.url, logger: false, poolSize: 20 });
  try {
    await flow.migrate();
    await setup(flow);
    await vacuumAnalyze(db.url);
    const claim = async (workflows: string[]) => {
      const t0 = performance.now();
      const { rows } = await flow.pool.query<{ n: number }>(
        `SELECT json_array_length(runs) AS n FROM durable_flow_claim(ARRAY['default'], $1::text[], $2, 'bench', 60000, 0, NULL)`,
        [workflows, LIMIT],
      );
      return { ms: performance.now() - t0, n: rows[0]!.n };
    };
    return await measure(claim);
  } finally {
    await flow.close();
    await db.drop();
  }
}

async function startMany(flow: DurableFlow, workflow: string, count: number): Promise<void> {
  const definition = flow.definitions.get(workflow)!;
  for (let i = 0; i < count; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, count - i) }, (_, j) => flow.startRun(definition, { n: i + j })));
  }
}

const register = (flow: DurableFlow) => {
  flow.workflow('plain', async () => null);
  flow.workflow('throttled', { throttle: { limit: LIMIT, period: 200 } }, async () => null);
};

const unthrottled = await withFlow(
  'df_thr_plain',
  async (flow) => {
    register(flow);
    await startMany(flow, 'plain', N);
  },
  async (claim) => {
    const claims: number[] = [];
    for (let i = 0; i < SAMPLES && i * LIMIT < N; i++) claims.push((await claim(['plain'])).ms);
    return { claims };
  },
);

const throttled = await withFlow(
  'df_thr_throttled',
  async (flow) => {
    register(flow);
    await startMany(flow, 'throttled', N);
  },
  async (claim) => {
    const first = (await claim(['throttled'])).ms;
    const admitting: number[] = [];
    const idle: number[] = [];
    while (admitting.length < Math.min(50, Math.floor(N / LIMIT) - 1)) {
      const { ms, n } = await claim(['throttled']);
      (n > 0 ? admitting : idle).push(ms);
      await sleep(5);
    }
    return { claims: [...admitting, ...idle], admitting, idle, first };
  },
);

const beside = await withFlow(
  'df_thr_beside',
  async (flow) => {
    register(flow);
    await startMany(flow, 'throttled', N);
    await startMany(flow, 'plain', SAMPLES * LIMIT);
  },
  async (claim) => {
    const claims: number[] = [];
    await claim(['throttled']); // parks the backlog, as the first claim of any worker does
    for (let i = 0; i < SAMPLES; i++) claims.push((await claim(['plain', 'throttled'])).ms);
    return { claims };
  },
);

const cell = (values: number[] | undefined, p: number) => (values && values.length > 0 ? String(round(p === 50 ? median(values) : percentile(values, p))) : '–');
console.log(`\nThrottle: claim latency (one durable_flow_claim, limit ${LIMIT}) with ${N.toLocaleString('en')} runs queued, ms\n`);
console.log(`| figure | unthrottled, ${N.toLocaleString('en')} due | throttled (${LIMIT} per 200 ms), ${N.toLocaleString('en')} queued behind it | unthrottled beside ${N.toLocaleString('en')} throttled |`);
console.log('|---|---:|---:|---:|');
console.log(`| claim, median | ${cell(unthrottled.claims, 50)} | ${cell(throttled.admitting, 50)} (admitting) · ${cell(throttled.idle, 50)} (window full) | ${cell(beside.claims, 50)} |`);
console.log(`| claim, p99 | ${cell(unthrottled.claims, 99)} | ${cell(throttled.admitting, 99)} (admitting) · ${cell(throttled.idle, 99)} (window full) | ${cell(beside.claims, 99)} |`);
console.log(`| first claim (parks the due backlog) | – | ${round(throttled.first!)} | – |`);
console.log(`| claims measured | ${unthrottled.claims.length} | ${throttled.admitting!.length} admitting, ${throttled.idle!.length} window full | ${beside.claims.length} |`);
