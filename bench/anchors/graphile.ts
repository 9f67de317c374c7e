/**
 * Anchor: graphile-worker on this machine, in a fresh database.
 *
 * A "chain" is 3 jobs: anchor_step1 adds anchor_step2 with helpers.addJob, which adds anchor_step3,
 * which ends the chain. One runner (`run()` with a taskList, no crontab), concurrency 10, its
 * defaults otherwise (LISTEN/NOTIFY, 2 s poll fallback, pool of 10); its per-job info logging is
 * silenced (errors still print). A chain ends when anchor_step3's task function returns
 * (graphile-worker then deletes the job without the task waiting for it).
 *
 * Figures: chains/s for `n` chains whose first jobs are all added at once (concurrent
 * runner.addJob calls), from the first add to the last chain end; sequential add → end latency of
 * one chain at a time; commits and WAL flushes per chain over those sequential chains, measured
 * against idle control phases of the same shape (see common.ts measureSequential).
 */
import { performance } from 'node:perf_hooks';
import { Logger, run } from 'graphile-worker';
import type { Runner, TaskList } from 'graphile-worker';
import type { AnchorResult } from './common.js';
import {
  ChainEnds,
  createDb,
  installedVersion,
  measureSequential,
  percentile,
  round,
  vacuumAnalyze,
  withTimeout,
} from './common.js';

const SYSTEM = 'graphile-worker';
const CONCURRENCY = 10;
const WARMUP = 20;

interface ChainPayload {
  id: string;
}

function chainId(payload: unknown): string {
  const id = (payload as Partial<ChainPayload> | null)?.id;
  if (typeof id !== 'string') throw new Error('graphile anchor: job without a chain id');
  return id;
}

const quietLogger = new Logger(() => (level, message) => {
  if (String(level) === 'error') console.error(`[graphile-worker] ${message}`);
});

function taskList(ends: ChainEnds): TaskList {
  return {
    anchor_step1: async (payload, helpers) => {
      await helpers.addJob('anchor_step2', { id: chainId(payload) });
    },
    anchor_step2: async (payload, helpers) => {
      await helpers.addJob('anchor_step3', { id: chainId(payload) });
    },
    anchor_step3: async (payload) => {
      ends.end(chainId(payload));
    },
  };
}

async function start(url: string, ends: ChainEnds): Promise<Runner> {
  return run({
    connectionString: url,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    logger: quietLogger,
    taskList: taskList(ends),
  });
}

async function oneChain(runner: Runner, ends: ChainEnds, id: string): Promise<number> {
  const t = performance.now();
  const end = ends.expect(id);
  await runner.addJob('anchor_step1', { id });
  const at = await withTimeout(end, 30_000, `graphile chain ${id}`);
  return at - t;
}

async function warmUp(runner: Runner, ends: ChainEnds, tag: string): Promise<void> {
  for (let i = 0; i < WARMUP; i++) await oneChain(runner, ends, `${tag}-warm-${i}`);
}

export interface GraphileOptions {
  n: number;
  seq: number;
}

export async function runGraphile(options: GraphileOptions): Promise<AnchorResult[]> {
  const { n, seq } = options;
  const version = installedVersion('graphile-worker');
  const results: AnchorResult[] = [];
  const ends = new ChainEnds();
  const db = await createDb('anchor_graphile');
  let runner: Runner | undefined;
  const stop = async () => {
    const r = runner;
    runner = undefined;
    if (r) await r.stop();
  };
  try {
    // ---- Phase A: throughput ----
    runner = await start(db.url, ends);
    await warmUp(runner, ends, 'a');
    const ids = Array.from({ length: n }, (_, i) => `tp-${i}`);
    const endPromises = ids.map((id) => ends.expect(id));
    const t0 = performance.now();
    const r = runner;
    await Promise.all(ids.map((id) => r.addJob('anchor_step1', { id })));
    const addedMs = performance.now() - t0;
    const endTimes = await withTimeout(Promise.all(endPromises), 300_000, 'graphile throughput');
    const elapsed = Math.max(...endTimes) - t0;
    results.push({
      system: SYSTEM,
      version,
      figure: 'throughput_1',
      value: round(n / (elapsed / 1000), 1),
      unit: 'chains/s',
      notes: `${n} 3-job chains, first jobs added by ${n} concurrent runner.addJob calls (${round(addedMs / 1000, 2)} s), one runner, concurrency ${CONCURRENCY}; ${round(elapsed / 1000, 2)} s to the last chain end`,
    });
    await stop();

    // ---- Sequential chains: latency, commits and WAL flushes per chain ----
    await vacuumAnalyze(db.url);
    let phase = 0;
    const sequential = await measureSequential(
      {
        start: async () => {
          phase++;
          runner = await start(db.url, ends);
          await warmUp(runner, ends, `p${phase}`);
        },
        run: async (count) => {
          const latencies: number[] = [];
          for (let i = 0; i < count; i++) latencies.push(await oneChain(runner!, ends, `p${phase}-seq-${i}`));
          return latencies;
        },
        stop,
      },
      { system: SYSTEM, version, dbName: db.name, seq, unit: 'chain' },
    );
    const latNote = `${seq} sequential chains (each runner start warmed up by ${WARMUP} chains): runner.addJob of the first job → third task function returns`;
    results.push(
      {
        system: SYSTEM,
        version,
        figure: 'latency_median',
        value: round(percentile(sequential.latencies, 50)),
        unit: 'ms',
        notes: latNote,
      },
      {
        system: SYSTEM,
        version,
        figure: 'latency_p99',
        value: round(percentile(sequential.latencies, 99)),
        unit: 'ms',
        notes: latNote,
      },
      ...sequential.results,
    );
    if (ends.unexpected > 0) throw new Error(`graphile anchor: ${ends.unexpected} chains ended twice or unexpectedly`);
  } finally {
    await stop().catch((err: unknown) => console.error('graphile anchor: stop failed', err));
    await db.drop();
  }
  return results;
}
