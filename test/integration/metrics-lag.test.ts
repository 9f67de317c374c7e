import { describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { LAG_SCAN_RUNS } from '../../lib/metrics/reads.js';
import { databasePerFile } from '../helpers/flow.js';

// The queue lag reads at most LAG_SCAN_RUNS of the oldest due runs; a workflow none of whose due runs is
// among them is looked up past them (cached a while). What it shows must still be each workflow's
// oldest due run, as a scan of every due run finds it.
const files = databasePerFile('metrics_lag');

type Lag = Record<string, { queue: string; seconds: number }>;

/** The gauge as a scrape answers it. */
async function scraped(flow: DurableFlow): Promise<Lag> {
  const lag: Lag = {};
  for (const line of (await flow.metrics.text()).split('\n')) {
    const m = /^durable_flow_queue_lag_seconds\{workflow="([^"]+)",queue="([^"]+)"\} (\S+)$/.exec(line);
    if (m) lag[m[1]!] = { queue: m[2]!, seconds: Number(m[3]) };
  }
  return lag;
}

/** Every due run read: each workflow's oldest. */
async function reference(flow: DurableFlow): Promise<Lag> {
  const { rows } = await flow.pool.query<{ workflow_name: string; queue_name: string; seconds: number }>(
    `SELECT DISTINCT ON (workflow_name) workflow_name, queue_name, extract(epoch FROM statement_timestamp() - wake_at)::float8 AS seconds
     FROM ${flow.tables.runs} WHERE wake_at <= statement_timestamp() ORDER BY workflow_name, wake_at`,
  );
  return Object.fromEntries(rows.map((r) => [r.workflow_name, { queue: r.queue_name, seconds: r.seconds }]));
}

/** The same workflows and queues, and ages that differ by no more than the moments between the reads. */
function expectSameLag(actual: Lag, expected: Lag): void {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [workflow, { queue, seconds }] of Object.entries(expected)) {
    expect(actual[workflow]!.queue).toBe(queue);
    expect(Math.abs(actual[workflow]!.seconds - seconds)).toBeLessThan(30); // ages set apart by 10 minutes at least
  }
}

const insert = (flow: DurableFlow, rows: string) =>
  flow.pool.query(`INSERT INTO ${flow.tables.runs} (run_id, workflow_name, queue_name, status, input, wake_at) ${rows}`);

describe('the queue lag with a due backlog', () => {
  it("shows each workflow's oldest due run when more than LAG_SCAN_RUNS are due in front of it", async () => {
    const flow = files.ctx.flow();
    await flow.migrate();
    // The backlog: more due runs of one workflow than a read scans, due 2 h to 1 h ago.
    await insert(flow, `SELECT 'front-' || g, 'lag-front', 'default', 'enqueued', '{}', now() - interval '2 hours' + g * interval '1 second'
                        FROM generate_series(1, ${LAG_SCAN_RUNS + 500}) g`);
    await insert(flow, `VALUES ('mixed-1', 'lag-mixed', 'default', 'ready', '{}', now() - interval '110 minutes'),
                               ('mixed-2', 'lag-mixed', 'default', 'ready', '{}', now() - interval '20 minutes'),
                               ('behind-1', 'lag-behind', 'slow', 'retrying', '{}', now() - interval '30 minutes'),
                               ('behind-2', 'lag-behind', 'slow', 'retrying', '{}', now() - interval '10 minutes'),
                               ('sleeper-1', 'lag-sleeper', 'default', 'sleeping', '{}', now() + interval '1 hour'),
                               ('waiter-1', 'lag-waiter', 'default', 'waiting', '{}', NULL)`);
    const first = await scraped(flow);
    expect(Object.keys(first).sort()).toEqual(['lag-behind', 'lag-front', 'lag-mixed']);
    expectSameLag(first, await reference(flow));

    // A workflow pushed behind the backlog after that look-up is looked up too, not taken for one with none due.
    await insert(flow, `VALUES ('late-1', 'lag-late', 'other', 'enqueued', '{}', now() - interval '40 minutes')`);
    const second = await scraped(flow);
    expect(second['lag-late']).toBeDefined();
    expectSameLag(second, await reference(flow));

    // The backlog claimed: fewer than LAG_SCAN_RUNS due, every workflow's oldest among them.
    await flow.pool.query(`UPDATE ${flow.tables.runs} SET status = 'running', wake_at = now() + interval '1 hour', lease_owner = 'w' WHERE workflow_name = 'lag-front'`);
    expectSameLag(await scraped(flow), await reference(flow));
    expect(Object.keys(await scraped(flow)).sort()).toEqual(['lag-behind', 'lag-late', 'lag-mixed']);
  });
});
