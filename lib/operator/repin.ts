import { invalidOption } from '../config.js';
import type { RepinOptions } from '../types.js';
import { nowOf, transaction } from './context.js';
import type { OperatorContext } from './context.js';
import type { Who } from './runs.js';

/** The longest version a flow takes (the `version` option's limit). */
const MAX_VERSION = 200;

function checkVersion(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_VERSION) {
    throw invalidOption(name, value, `a version: a non-empty string of at most ${MAX_VERSION} characters`);
  }
  return value;
}

/**
 * flow.repin(): the runs not finished that are pinned to `from` (of `options.workflow` only, when
 * given) are pinned to `to` (the calling flow's version) instead, so that workers of `to` claim them.
 * One statement: it locks the runs it moves (a claim of one of them waits for it, or it for the claim),
 * audits each (action 'repin', details { from, to }) and wakes the workers of the queues whose moved
 * runs are due. Returns how many runs moved. (The terminal statuses are spelled out, so the partial
 * index durable_flow_runs_pinned_live finds the runs.)
 */
export async function repinRuns(ctx: OperatorContext, from: unknown, to: string, options: RepinOptions, who: Who): Promise<number> {
  const fromVersion = checkVersion(from, 'fromVersion');
  const workflow = options.workflow;
  if (workflow !== undefined && (typeof workflow !== 'string' || workflow.length === 0 || workflow.length > 255)) {
    throw invalidOption('workflow', workflow, 'a workflow name');
  }
  if (fromVersion === to) return 0;
  const { runs, audit, wakeChannel } = ctx.db.tables;
  const now = nowOf(ctx);
  return transaction(ctx, async (t) => {
    const [row] = await ctx.db.select<{ moved: number }>(
      `WITH moved AS (
         UPDATE ${runs} r SET pinned_version = $2, updated_at = clock_timestamp()
         WHERE r.pinned_version = $1 AND r.status NOT IN ('completed', 'failed', 'cancelled') AND ($3::text IS NULL OR r.workflow_name = $3)
         RETURNING r.run_id, r.workflow_name, r.queue_name, r.wake_at, r.lease_owner
       ), audited AS (
         INSERT INTO ${audit} (at, actor, action, workflow_name, run_id, reason, details)
         SELECT ${now}, $4, 'repin', m.workflow_name, m.run_id, $5, jsonb_build_object('from', $1::text, 'to', $2::text)
         FROM moved m
       ), woken AS (
         SELECT pg_notify($6, CASE WHEN octet_length(q.queue_name) <= 1000 THEN q.queue_name ELSE '*' END)
         FROM (SELECT DISTINCT m.queue_name FROM moved m WHERE m.lease_owner IS NULL AND m.wake_at <= ${now}) q
       )
       SELECT (SELECT count(*) FROM moved)::int AS moved, (SELECT count(*) FROM woken)::int AS woken`,
      [fromVersion, to, workflow ?? null, who.actor, who.reason, wakeChannel],
      t,
    );
    return row?.moved ?? 0;
  });
}
