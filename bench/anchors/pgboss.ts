/**
 * Anchor: pg-boss on this machine, in a fresh database.
 *
 * A "chain" is 3 jobs on one queue: the handler for step 1 sends step 2 with boss.send, step 2
 * sends step 3, step 3 ends the chain. One PgBoss instance, one boss.work() with
 * localConcurrency 10 and pollingIntervalSeconds 0.5 (its minimum; the defaults, 2 s polling and
 * one job at a time, would make every figure a polling figure). With `notify` (the default) the
 * instance also enables useListenNotify and the queue is created with notify: true, so a send
 * wakes the workers at once (pg-boss 12's opt-in LISTEN/NOTIFY), and notifyPollingIntervalSeconds
 * is 0.5 too: with NOTIFY active a worker that has just finished a job otherwise waits 30 s (the
 * default) for its next fetch unless another send wakes it, so a backlog drains in 30 s steps.
 * Without NOTIFY (`notify: false`), each of the 10 workers waits 0.5 s after every job, which
 * caps the queue near 20 jobs/s (2,000 chains would take about 5 minutes).
 * Its defaults otherwise (batchSize 1, pool max 10, supervision and scheduling on). A chain ends
 * when step 3's handler returns (pg-boss then marks the job completed before fetching again).
 *
 * Figures: chains/s for `n` chains whose first jobs are all sent at once (concurrent boss.send
 * calls), from the first send to the last chain end; sequential send → end latency of one chain at
 * a time; commits and WAL flushes per chain against idle control phases (common.ts measureSequential).
 */
import { PgBoss } from 'pg-boss';
import type { AnchorResult } from './common.js';
import { ChainEnds, createDb, installedVersion, measureChains } from './common.js';

const SYSTEM = 'pg-boss';
const QUEUE = 'anchor_chain';
const LOCAL_CONCURRENCY = 10;
const POLLING_INTERVAL_SECONDS = 0.5;

interface ChainJob {
  id: string;
  step: number;
}

export interface PgBossOptions {
  n: number;
  seq: number;
  /** Use pg-boss's opt-in LISTEN/NOTIFY wake-ups (useListenNotify + queue notify). Default true. */
  notify?: boolean;
}

function optionsNote(notify: boolean): string {
  return (
    `boss.work localConcurrency ${LOCAL_CONCURRENCY}, pollingIntervalSeconds ${POLLING_INTERVAL_SECONDS}` +
    (notify
      ? `, useListenNotify true + queue notify true, notifyPollingIntervalSeconds ${POLLING_INTERVAL_SECONDS}`
      : ', no LISTEN/NOTIFY (polling only)') +
    ', batchSize 1; defaults otherwise'
  );
}

export async function runPgBoss(options: PgBossOptions): Promise<AnchorResult[]> {
  const notify = options.notify ?? true;
  const system = notify ? SYSTEM : `${SYSTEM} (polling)`;
  const ends = new ChainEnds();
  const errors: unknown[] = [];
  const warnings = new Set<string>();
  const db = await createDb('anchor_pgboss');
  let boss: PgBoss | undefined;

  const start = async (): Promise<void> => {
    const b = new PgBoss({ connectionString: db.url, useListenNotify: notify });
    b.on('error', (err: unknown) => errors.push(err));
    b.on('warning', (warning: { message?: string }) => warnings.add(String(warning.message)));
    boss = b;
    await b.start();
    await b.createQueue(QUEUE, { notify });
    await b.work<ChainJob>(
      QUEUE,
      {
        localConcurrency: LOCAL_CONCURRENCY,
        pollingIntervalSeconds: POLLING_INTERVAL_SECONDS,
        // With NOTIFY active pg-boss polls at this (default 30 s) instead: a worker that has just
        // finished a job waits it out unless a new send wakes it, so a backlog would drain in 30 s steps.
        notifyPollingIntervalSeconds: POLLING_INTERVAL_SECONDS,
      },
      async (jobs) => {
        for (const job of jobs) {
          const { id, step } = job.data;
          if (step < 3) await b.send(QUEUE, { id, step: step + 1 });
          else ends.end(id);
        }
      },
    );
  };
  const stop = async () => {
    const b = boss;
    boss = undefined;
    if (b) await b.stop({ graceful: true, close: true });
  };

  try {
    const results = await measureChains(
      {
        system,
        version: installedVersion('pg-boss'),
        db,
        ends,
        start,
        addFirst: async (id) => {
          await boss!.send(QUEUE, { id, step: 1 });
        },
        stop,
        describe: { add: 'boss.send', setup: `one instance; ${optionsNote(notify)}`, end: "step 3's handler returns" },
        throughputTimeoutMs: 600_000,
      },
      options,
    );
    if (warnings.size > 0) {
      const text = `pg-boss warnings during the run: ${[...warnings].join(' | ')}`;
      for (const r of results) r.notes = r.notes ? `${r.notes}; ${text}` : text;
    }
    if (errors.length > 0) throw new Error(`pg-boss anchor: ${errors.length} error events, first: ${String(errors[0])}`);
    return results;
  } finally {
    await stop().catch((err: unknown) => console.error('pg-boss anchor: stop failed', err));
    await db.drop();
  }
}
