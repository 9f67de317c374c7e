/**
 * The history checker (Jepsen-style, our own). A chaos test installs it in its database before any
 * run starts; chaos workflows call `recordEntry` first thing in every step body. Triggers record
 * every transition of a step to `succeeded` (a checkpoint) and of a run to a terminal status (an
 * outcome), so the checker sees writes the engine makes, not what it says it made.
 *
 * Per run it reports:
 * - lost: a run the test started that is not terminal at the end;
 * - completedReexecutions: entries into a step body whose checkpoint was already stored at entry;
 * - duplicateCheckpoints: more than one transition to `succeeded` of one step;
 * - duplicateOutcomes: more than one terminal transition of one run;
 * - unexpected: entries for runs that do not exist;
 * - reexecutions: entries beyond the first per (run, step): allowed only for interrupted steps,
 *   at most one per injected fault (the test passes its bound).
 */
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';

type Queryable = Pick<pg.Pool, 'query'>;

export async function installHistory(db: Queryable): Promise<void> {
  await db.query(`
    CREATE TABLE IF NOT EXISTS test_effects (
      id bigserial PRIMARY KEY, run_id text NOT NULL, step text NOT NULL, pid int NOT NULL, attempt int NOT NULL,
      checkpointed_at_entry boolean NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE IF NOT EXISTS test_checkpoints (
      id bigserial PRIMARY KEY, run_id text NOT NULL, step text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE TABLE IF NOT EXISTS test_outcomes (
      id bigserial PRIMARY KEY, run_id text NOT NULL, status text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());

    CREATE OR REPLACE FUNCTION test_record_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.status = 'succeeded' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'succeeded') THEN
        INSERT INTO test_checkpoints (run_id, step)
          SELECT r.run_id, NEW.name FROM durable_flow_workflow_runs r WHERE r.id = NEW.workflow_run_id;
      END IF;
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS test_record_checkpoint ON durable_flow_workflow_steps;
    CREATE TRIGGER test_record_checkpoint AFTER INSERT OR UPDATE OF status ON durable_flow_workflow_steps
      FOR EACH ROW EXECUTE FUNCTION test_record_checkpoint();

    CREATE OR REPLACE FUNCTION test_record_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.status IN ('completed', 'failed', 'cancelled')
         AND (TG_OP = 'INSERT' OR OLD.status NOT IN ('completed', 'failed', 'cancelled')) THEN
        INSERT INTO test_outcomes (run_id, status) VALUES (NEW.run_id, NEW.status);
      END IF;
      RETURN NULL;
    END $$;
    DROP TRIGGER IF EXISTS test_record_outcome ON durable_flow_workflow_runs;
    CREATE TRIGGER test_record_outcome AFTER INSERT OR UPDATE OF status ON durable_flow_workflow_runs
      FOR EACH ROW EXECUTE FUNCTION test_record_outcome();`);
}

/** Records an entry into a step body, noting whether that step's checkpoint was already stored. */
export async function recordEntry(db: Queryable, runId: string, step: string, attempt: number): Promise<void> {
  await db.query(
    `INSERT INTO test_effects (run_id, step, pid, attempt, checkpointed_at_entry)
     SELECT $1, $2, $3, $4, EXISTS (
       SELECT 1 FROM durable_flow_workflow_steps s JOIN durable_flow_workflow_runs r ON r.id = s.workflow_run_id
        WHERE r.run_id = $1 AND s.name = $2 AND s.status = 'succeeded')`,
    [runId, step, process.pid, attempt],
  );
}

export interface History {
  runs: number;
  lost: string[];
  completedReexecutions: number;
  duplicateCheckpoints: number;
  duplicateOutcomes: number;
  unexpected: number;
  /** Entries beyond the first per (run, step), i.e. interrupted steps run again. */
  reexecutions: number;
  /** Step bodies entered in all. */
  entries: number;
  /** The most entries into one step of one run. */
  maxEntriesPerStep: number;
  outcomes: Record<string, number>;
}

export async function checkHistory(db: Queryable, runIds: readonly string[]): Promise<History> {
  const q = async <T extends pg.QueryResultRow>(sql: string): Promise<T> => (await db.query<T>(sql, [runIds])).rows[0]!;
  const lost = await db.query<{ run_id: string }>(
    `SELECT wanted AS run_id FROM unnest($1::text[]) wanted
      WHERE NOT EXISTS (SELECT 1 FROM durable_flow_workflow_runs r WHERE r.run_id = wanted AND r.status IN ('completed', 'failed', 'cancelled'))`,
    [runIds],
  );
  const counts = await q<{ completed_reexecutions: number; reexecutions: number; entries: number; max_entries: number }>(
    `SELECT count(*) FILTER (WHERE checkpointed_at_entry)::int AS completed_reexecutions,
            coalesce((SELECT max(c) FROM (SELECT count(*) AS c FROM test_effects WHERE run_id = ANY ($1::text[]) GROUP BY run_id, step) x), 0)::int AS max_entries,
            (count(*) - count(DISTINCT (run_id, step)))::int AS reexecutions,
            count(*)::int AS entries
       FROM test_effects WHERE run_id = ANY ($1::text[])`,
  );
  const { rows: [unexpected] } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM test_effects e WHERE NOT EXISTS (SELECT 1 FROM durable_flow_workflow_runs r WHERE r.run_id = e.run_id)`,
  );
  const checkpoints = await q<{ n: number }>(
    `SELECT coalesce(sum(c - 1), 0)::int AS n FROM (SELECT count(*) AS c FROM test_checkpoints WHERE run_id = ANY ($1::text[]) GROUP BY run_id, step) x`,
  );
  const outcomes = await q<{ n: number }>(
    `SELECT coalesce(sum(c - 1), 0)::int AS n FROM (SELECT count(*) AS c FROM test_outcomes WHERE run_id = ANY ($1::text[]) GROUP BY run_id) x`,
  );
  const byStatus = await db.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM durable_flow_workflow_runs WHERE run_id = ANY ($1::text[]) GROUP BY status`,
    [runIds],
  );
  return {
    runs: runIds.length,
    lost: lost.rows.map((r) => r.run_id),
    completedReexecutions: counts.completed_reexecutions,
    duplicateCheckpoints: checkpoints.n,
    duplicateOutcomes: outcomes.n,
    unexpected: unexpected!.n,
    reexecutions: counts.reexecutions,
    entries: counts.entries,
    maxEntriesPerStep: counts.max_entries,
    outcomes: Object.fromEntries(byStatus.rows.map((r) => [r.status, r.n])),
  };
}

/**
 * Asserts the invariants every chaos test shares. `maxReexecutions` bounds interrupted steps run
 * again in all; `maxEntriesPerStep` bounds the entries into one step (1 + the faults it can have met).
 */
export function assertHistory(history: History, bounds: { maxReexecutions: number; maxEntriesPerStep: number }): void {
  const { maxReexecutions, maxEntriesPerStep } = bounds;
  const problems: string[] = [];
  if (history.lost.length) problems.push(`${history.lost.length} runs lost (not terminal): ${history.lost.slice(0, 5).join(', ')}`);
  if (history.completedReexecutions) problems.push(`${history.completedReexecutions} entries into steps already checkpointed`);
  if (history.duplicateCheckpoints) problems.push(`${history.duplicateCheckpoints} duplicate checkpoints`);
  if (history.duplicateOutcomes) problems.push(`${history.duplicateOutcomes} duplicate outcomes`);
  if (history.unexpected) problems.push(`${history.unexpected} entries for runs never started`);
  if (history.reexecutions > maxReexecutions) problems.push(`${history.reexecutions} re-executions, more than the ${maxReexecutions} the faults allow`);
  if (history.maxEntriesPerStep > maxEntriesPerStep) problems.push(`a step was entered ${history.maxEntriesPerStep} times, more than ${maxEntriesPerStep}`);
  if (problems.length) throw new Error(`History check failed: ${problems.join('; ')}\n${JSON.stringify(history)}`);
}

/**
 * Records a chaos scenario's figures (runs, faults, lost, duplicated…) in test-results/chaos.jsonl
 * (git-ignored) and prints them: the README's reliability table is read from there.
 */
export function reportFigures(scenario: string, figures: Record<string, number | string>): void {
  const line = JSON.stringify({ scenario, ...figures, at: new Date().toISOString() });
  const dir = path.resolve(import.meta.dirname, '../../test-results');
  fs.mkdirSync(dir, { recursive: true });
  fs.appendFileSync(path.join(dir, 'chaos.jsonl'), `${line}\n`);
  console.log(`[chaos] ${line}`);
}
