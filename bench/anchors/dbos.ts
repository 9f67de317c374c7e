/**
 * Anchor: DBOS Transact (@dbos-inc/dbos-sdk) on this machine, in a fresh system database.
 *
 * A workflow of 3 steps, each returning a small value. Figures: throughput of `n` workflows started
 * at once, sequential start → result latency, Postgres commits and WAL flushes per workflow, and
 * `DBOS.send` → `DBOS.recv` resume latency. DBOS runs with its defaults (system pool of 10,
 * LISTEN/NOTIFY on) except logLevel 'warn' and a fixed applicationVersion.
 *
 * One launch for throughput and then the event exchanges; then, after a VACUUM (ANALYZE), the
 * sequential runs in rounds of separate launches, each round a measured launch and an idle control
 * launch whose counters are subtracted (see common.ts measureSequential): DBOS's launch, warm-up,
 * shutdown and idle background work (queue and recovery polling) cancel out.
 */
import { performance } from 'node:perf_hooks';
import { DBOS } from '@dbos-inc/dbos-sdk';
import type { AnchorResult } from './common.js';
import { createDb, installedVersion, measureSequential, percentile, round, sleep, vacuumAnalyze } from './common.js';

const SYSTEM = 'DBOS Transact';
const WARMUP = 20;

// ---- Workflows (registered once per process, before the first launch) ----

const stepA = DBOS.registerStep(async (n: number) => n + 1, { name: 'a' });
const stepB = DBOS.registerStep(async (n: number) => n + 1, { name: 'b' });
const stepC = DBOS.registerStep(async (n: number) => n + 1, { name: 'c' });

const three = DBOS.registerWorkflow(
  async (n: number): Promise<number> => {
    const a = await stepA(n);
    const b = await stepB(a);
    return stepC(b);
  },
  { name: 'anchor_three' },
);

/** In-process marks for the event exchange (not durable; only the benchmark reads them). */
const waiting = new Map<string, number>();
const resumed = new Map<string, number>();

const stepBefore = DBOS.registerStep(async () => 1, { name: 'before' });
const stepAfter = DBOS.registerStep(
  async (key: string) => {
    resumed.set(key, performance.now());
    return 2;
  },
  { name: 'after' },
);

const waiter = DBOS.registerWorkflow(
  async (key: string): Promise<string | null> => {
    await stepBefore();
    waiting.set(key, performance.now());
    const message = await DBOS.recv<string>('go', 60);
    await stepAfter(key);
    return message;
  },
  { name: 'anchor_waiter' },
);

// ---- Harness ----

let launched = false;

async function launch(url: string): Promise<void> {
  DBOS.setConfig({
    name: 'durable_flow_anchor',
    systemDatabaseUrl: url,
    applicationVersion: 'anchor-1',
    logLevel: 'warn',
  });
  await DBOS.launch();
  launched = true;
}

async function shutdown(): Promise<void> {
  if (!launched) return;
  launched = false;
  await DBOS.shutdown();
}

async function runThree(n: number): Promise<number> {
  const handle = await DBOS.startWorkflow(three)(n);
  return handle.getResult();
}

async function warmUp(): Promise<void> {
  for (let i = 0; i < WARMUP; i++) await runThree(i);
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('DBOS anchor: timed out waiting');
    await sleep(2);
  }
}

export interface DbosOptions {
  n: number;
  seq: number;
  events: number;
}

export async function runDbos(options: DbosOptions): Promise<AnchorResult[]> {
  const { n, seq, events } = options;
  const version = installedVersion('@dbos-inc/dbos-sdk');
  const results: AnchorResult[] = [];
  const add = (figure: AnchorResult['figure'], value: number, unit: string, notes?: string) =>
    results.push({ system: SYSTEM, version, figure, value, unit, ...(notes ? { notes } : {}) });

  const db = await createDb('anchor_dbos');
  try {
    // ---- Phase A: throughput, then event → resume latency ----
    await launch(db.url);
    await warmUp();

    const t0 = performance.now();
    const handles = await Promise.all(Array.from({ length: n }, (_, i) => DBOS.startWorkflow(three)(i)));
    const outputs = await Promise.all(handles.map((h) => h.getResult()));
    const elapsed = performance.now() - t0;
    const wrong = outputs.filter((v, i) => v !== i + 3).length;
    if (wrong > 0) throw new Error(`DBOS anchor: ${wrong} workflows returned a wrong result`);
    add(
      'throughput_1',
      round(n / (elapsed / 1000), 1),
      'wf/s',
      `${n} workflows via DBOS.startWorkflow at once, all results awaited; ${round(elapsed / 1000, 2)} s`,
    );

    const resumeMs: number[] = [];
    for (let i = 0; i < events; i++) {
      const key = `ev-${i}`;
      const handle = await DBOS.startWorkflow(waiter, { workflowID: `anchor-waiter-${db.name}-${i}` })(key);
      await waitFor(() => waiting.has(key), 30_000);
      await sleep(50); // let recv() finish its first check and block on the notification
      const sentAt = performance.now();
      await DBOS.send(handle.workflowID, 'go!', 'go');
      await waitFor(() => resumed.has(key), 30_000);
      resumeMs.push(resumed.get(key)! - sentAt);
      const out = await handle.getResult();
      if (out !== 'go!') throw new Error(`DBOS anchor: waiter got ${String(out)}`);
    }
    const evNote = `${events} exchanges: workflow step → DBOS.recv('go') → step; from just before DBOS.send to the second step's start; send issued 50 ms after the workflow reached recv`;
    add('event_resume_median', round(percentile(resumeMs, 50)), 'ms', evNote);
    add('event_resume_p99', round(percentile(resumeMs, 99)), 'ms', evNote);
    await shutdown();

    // ---- Sequential start → result latency, commits and WAL flushes per workflow ----
    await vacuumAnalyze(db.url);
    const sequential = await measureSequential(
      {
        start: async () => {
          await launch(db.url);
          await warmUp();
        },
        run: async (count) => {
          const latencies: number[] = [];
          for (let i = 0; i < count; i++) {
            const t = performance.now();
            const out = await runThree(i);
            latencies.push(performance.now() - t);
            if (out !== i + 3) throw new Error('DBOS anchor: wrong result');
          }
          return latencies;
        },
        stop: shutdown,
      },
      { system: SYSTEM, version, dbName: db.name, seq, unit: 'wf' },
    );
    const latNote = `${seq} sequential runs (each launch warmed up by ${WARMUP} runs); DBOS.startWorkflow(...) then handle.getResult()`;
    add('latency_median', round(percentile(sequential.latencies, 50)), 'ms', latNote);
    add('latency_p99', round(percentile(sequential.latencies, 99)), 'ms', latNote);
    results.push(...sequential.results);
  } finally {
    await shutdown().catch(() => undefined);
    await db.drop();
  }
  return results;
}
