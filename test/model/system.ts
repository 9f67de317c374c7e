/**
 * The real side of the event-wait property tests: one flow on a test database driven in-process with
 * the harness, the workflow the model describes, crashed executions (stopped dead at a debug point,
 * released only at the end to prove they are fenced), and the observations the model is checked with.
 */
import { isDeepStrictEqual } from 'node:util';
import { setDebugPoint } from '../../lib/debug-point.js';
import { WaitTimeoutError } from '../../lib/index.js';
import type { DurableFlow, Worker, Workflow, WorkflowContext } from '../../lib/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { eventually, setupDatabase } from '../helpers/flow.js';
import { LEASE_TICKS, ModelMismatch, TICK_MS, canonical } from './model.js';
import type { CrashPoint, Model, Observed, RunSpec } from './model.js';

export interface WaitInput {
  k: number;
  before: boolean;
  second: boolean;
  timeoutMs: number | null;
}

/** The modelled workflow: [step `before`] → wait `first` → [wait `second`], a timeout read as 'timeout'. */
export function registerWorkflow(flow: DurableFlow): Workflow<WaitInput, unknown> {
  return flow.workflow('model_wait', async ({ input, step }: WorkflowContext<WaitInput>) => {
    const wait = async (name: string): Promise<unknown> => {
      try {
        return await step.waitForEvent(name, {
          event: 'e',
          match: { k: input.k },
          ...(input.timeoutMs === null ? {} : { timeout: input.timeoutMs }),
        });
      } catch (error) {
        if (error instanceof WaitTimeoutError) return 'timeout';
        throw error;
      }
    };
    if (input.before) await step.run('before', () => ({ k: input.k }));
    const first = await wait('first');
    if (!input.second) return { first };
    return { first, second: await wait('second') };
  });
}

interface Zombie {
  runId: string;
  point: CrashPoint;
  release(): void;
  /** The worker that holds the stuck execution (it claims nothing more). */
  worker: Worker;
}

/**
 * One claim of due runs, whose executions run on: drain(0) gives up right after its first claim (it
 * rejects if it claimed anything), and this worker never claims again. A stuck execution's worker must
 * not turn into a drain running in the background once that execution ends (say, fenced when its
 * running-step marker fires after a takeover).
 */
async function claimOnce(worker: Worker): Promise<void> {
  try {
    await worker.drain(0);
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'INVALID_STATE') throw error;
  }
}

const TABLES = ['runs', 'steps', 'waits', 'events', 'logs'] as const;

export class System {
  readonly runIds: string[] = [];
  /** Database ids of the events stored under each event id. */
  readonly eventPks = new Map<string, string>();
  readonly #zombies: Zombie[] = [];
  /** Per run, its terminal state as first seen: a run ends once. */
  readonly #ended = new Map<string, string>();

  constructor(
    readonly flow: DurableFlow,
    readonly harness: TestHarness,
    readonly workflow: Workflow<WaitInput, unknown>,
  ) {}

  async start(spec: RunSpec): Promise<void> {
    const { k, before, second, timeout } = spec;
    const handle = await this.workflow.start({ k, before, second, timeoutMs: timeout === null ? null : timeout * TICK_MS });
    this.runIds.push(handle.runId);
  }

  /**
   * A drain in which run `runId`'s next execution stops dead at `point`. Returns whether it got
   * there; if it did, the execution stays stuck (holding its lease until it expires) and every
   * other due run has been drained.
   */
  async crash(runId: string, point: CrashPoint): Promise<boolean> {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let fired = false;
    setDebugPoint(point, (data) => {
      if (fired || data.runId !== runId) return;
      fired = true;
      return gate;
    });
    const worker = this.flow.worker({ concurrency: 20 });
    try {
      await claimOnce(worker);
      await eventually(() => fired || worker.active === 0, 30_000, 2);
    } finally {
      setDebugPoint(point, undefined);
    }
    if (fired) {
      this.#zombies.push({ runId, point, release, worker });
      // The other runs the stuck execution's worker claimed: let them end.
      await eventually(() => worker.active === 1, 30_000, 2);
    }
    await this.harness.drain();
    return fired;
  }

  /** Lets the stuck execution of run `runId` go on to its end, then drains. */
  async resume(runId: string): Promise<void> {
    const index = this.#zombies.map((z) => z.runId).lastIndexOf(runId);
    const [zombie] = this.#zombies.splice(index, 1);
    if (index < 0 || !zombie) throw new Error(`Test error: no stuck execution of run ${runId}`);
    zombie.release();
    await eventually(() => zombie.worker.active === 0, 30_000, 2);
    await this.harness.drain();
  }

  /** Checks every run against the model (and that no run ends twice). */
  async observe(model: Model, what: string): Promise<void> {
    const { rows } = await this.flow.pool.query<{ run_id: string; status: string; output: unknown }>(
      `SELECT run_id, status, output FROM ${this.flow.tables.runs}`,
    );
    const byId = new Map(rows.map((row) => [row.run_id, row]));
    for (const run of model.runs) {
      const runId = this.runIds[run.index]!;
      const row = byId.get(runId);
      if (!row) throw new ModelMismatch(`${run.describe()} ${what}: run ${runId} is missing`);
      const observed: Observed = row.status === 'completed' ? { status: row.status, output: row.output } : { status: row.status };
      if (['completed', 'failed', 'cancelled'].includes(row.status)) {
        const state = canonical(observed);
        const before = this.#ended.get(runId);
        if (before !== undefined && before !== state)
          throw new ModelMismatch(`${run.describe()} ${what}: it ended twice, as ${before} and then as ${state}`);
        this.#ended.set(runId, state);
      }
      run.observe(what, observed);
    }
  }

  /** Every row of the engine's tables, to compare before and after the stuck executions resume. */
  async dump(): Promise<Record<string, string[]>> {
    const dump: Record<string, string[]> = {};
    for (const table of TABLES) {
      const { rows } = await this.flow.pool.query<{ row: unknown }>(
        `SELECT to_jsonb(t) AS row FROM ${this.flow.tables[table]} t ORDER BY id`,
      );
      dump[table] = rows.map((r) => JSON.stringify(r.row));
    }
    return dump;
  }

  /**
   * Lets every stuck execution go on. Each was taken over (or its run cancelled) since, so it must
   * write nothing: the tables must stay exactly as they are. With `check` false (a scenario that
   * already failed), just releases them.
   */
  async releaseZombies(check: boolean): Promise<void> {
    const zombies = this.#zombies.splice(0);
    if (zombies.length === 0) return;
    const before = check ? await this.dump() : undefined;
    for (const zombie of zombies) zombie.release();
    await eventually(() => zombies.every((z) => z.worker.active === 0), 30_000, 2);
    if (!before) return;
    const after = await this.dump();
    for (const table of TABLES) {
      const added = after[table]!.filter((row) => !before[table]!.includes(row));
      const removed = before[table]!.filter((row) => !after[table]!.includes(row));
      if (added.length > 0 || removed.length > 0) {
        const stuck = zombies.map((z) => `${z.runId} at ${z.point}`).join(', ');
        throw new ModelMismatch(
          `Executions stopped at a debug point wrote after losing their lease (${stuck}); ${table} lost ${removed.join(' ')} and gained ${added.join(' ')}`,
        );
      }
    }
  }

  /** The events table holds exactly the events the model stored, in order. */
  async checkEvents(model: Model): Promise<void> {
    const { rows } = await this.flow.pool.query<{ event_id: string | null; name: string; payload: unknown }>(
      `SELECT event_id, name, payload FROM ${this.flow.tables.events} ORDER BY id`,
    );
    const stored = rows.map((r) => ({ id: r.event_id, name: r.name, payload: r.payload }));
    const expected = model.events.map((e) => ({ id: e.id ?? null, name: e.name, payload: e.payload }));
    if (!isDeepStrictEqual(stored, expected)) {
      throw new ModelMismatch(`The events table holds ${JSON.stringify(stored)}, expected ${JSON.stringify(expected)}`);
    }
  }
}

/** A test database with one flow (lease: LEASE_TICKS) and the workflow registered; a fresh System per scenario. */
export async function openSystems(prefix: string): Promise<{ system(): System; close(): Promise<void> }> {
  const ctx = await setupDatabase(prefix);
  const flow = ctx.flow({ leaseTtl: LEASE_TICKS * TICK_MS });
  const harness = createTestHarness(flow);
  const workflow = registerWorkflow(flow);
  return { system: () => new System(flow, harness, workflow), close: () => ctx.cleanup() };
}
