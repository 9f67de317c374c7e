import type { ResolvedOptions } from '../config.js';
import type { Queryable } from '../db/queryable.js';
import { toClaimedBatch } from '../db/sql/claimed.js';
import type { ClaimedRunRow, HistoryRow } from '../db/sql/claimed.js';
import { quoteIdent } from '../db/tables.js';
import type { Tables } from '../db/tables.js';
import { DurableFlowError } from '../errors.js';
import { TERMINAL_STATUSES } from '../types.js';
import type { WorkflowDefinition } from '../workflow/definition.js';
import { CheckReplay } from './replay.js';
import type { CheckResult } from './replay.js';

export type { CheckResult, Divergence } from './replay.js';

export interface CheckOptions {
  /** Runs read (and replayed concurrently) per query. Default 500. */
  batchSize?: number;
  /** How long one run's replay may take to reach its frontier. Default 2000 ms. */
  timeoutMs?: number;
}

export interface CheckHost {
  assertOpen(): void;
  db: Queryable;
  tables: Tables;
  options: ResolvedOptions;
  definitions: ReadonlyMap<string, WorkflowDefinition>;
}

/**
 * One batch of runs that are not terminal, after run `$1` by id (at most `$3`), with the step history
 * of each (durable_flow_history, as a claim loads it), in one read-only statement.
 */
const batchSql = (t: Tables): string => `
WITH batch AS (
  SELECT id, run_id, workflow_name, input::text AS input, lease_epoch, claim_count, attempts, created_snapshot,
         created_snapshot AS resume_snapshot, parent_run_id, queue_name, true AS replay
  FROM ${t.runs}
  WHERE id > $1::bigint AND NOT (status = ANY($2::text[]))
  ORDER BY id
  LIMIT $3
)
SELECT (SELECT coalesce(json_agg(batch ORDER BY id), '[]') FROM batch) AS runs,
       ${quoteIdent(t.schema)}.durable_flow_history(ARRAY(SELECT id FROM batch)) AS steps`;

function positiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < 1) {
    throw new DurableFlowError('INVALID_ARGUMENT', `Expected \`${name}\` of flow.check() to be an integer >= 1, got ${String(value)}`);
  }
  return value as number;
}

/**
 * flow.check(): replays the stored history of every run that is not terminal against the registered
 * code, without running a step body or writing anything (see CheckReplay), and reports per run `ok`
 * or its first divergence. Runs of a workflow this flow does not register are not ok.
 */
export async function checkRuns(host: CheckHost, options: CheckOptions = {}): Promise<CheckResult[]> {
  host.assertOpen();
  const batchSize = positiveInteger('batchSize', options.batchSize, 500);
  const timeoutMs = positiveInteger('timeoutMs', options.timeoutMs, 2000);
  const sql = batchSql(host.tables);
  const results: CheckResult[] = [];
  let after = '0';
  for (;;) {
    const [answer] = await host.db.query<{ runs: ClaimedRunRow[]; steps: HistoryRow[] }>(sql, [after, TERMINAL_STATUSES, batchSize]);
    const batch = toClaimedBatch(answer!.runs, answer!.steps, '', 0);
    if (batch.runs.length === 0) return results;
    const checked = await Promise.all(
      batch.runs.map((run) => {
        const definition = host.definitions.get(run.workflow);
        if (!definition) {
          const reason = `workflow "${run.workflow}" is not registered on this flow`;
          return { runId: run.runId, workflow: run.workflow, ok: false, divergence: { position: null, stored: null, requested: null, reason } };
        }
        return new CheckReplay(run, batch.history.get(run.id) ?? []).check(definition, host.options, timeoutMs);
      }),
    );
    results.push(...checked);
    after = batch.runs[batch.runs.length - 1]!.id;
    if (batch.runs.length < batchSize) return results;
  }
}
