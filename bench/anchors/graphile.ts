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
import { Logger, run } from 'graphile-worker';
import type { Runner, TaskList } from 'graphile-worker';
import type { AnchorResult } from './common.js';
import { ChainEnds, createDb, installedVersion, measureChains } from './common.js';

const SYSTEM = 'graphile-worker';
const CONCURRENCY = 10;

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

export interface GraphileOptions {
  n: number;
  seq: number;
}

export async function runGraphile(options: GraphileOptions): Promise<AnchorResult[]> {
  const ends = new ChainEnds();
  const db = await createDb('anchor_graphile');
  let runner: Runner | undefined;
  const stop = async () => {
    const r = runner;
    runner = undefined;
    if (r) await r.stop();
  };
  try {
    return await measureChains(
      {
        system: SYSTEM,
        version: installedVersion('graphile-worker'),
        db,
        ends,
        start: async () => {
          runner = await start(db.url, ends);
        },
        addFirst: async (id) => {
          await runner!.addJob('anchor_step1', { id });
        },
        stop,
        describe: { add: 'runner.addJob', setup: `one runner, concurrency ${CONCURRENCY}`, end: 'third task function returns' },
        throughputTimeoutMs: 300_000,
      },
      options,
    );
  } finally {
    await stop().catch((err: unknown) => console.error('graphile anchor: stop failed', err));
    await db.drop();
  }
}
