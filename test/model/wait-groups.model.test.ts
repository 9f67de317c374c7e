/**
 * step.waitAny against a reference model (fast-check): random interleavings of starts, events for
 * either event branch (one at a time, or two racing in concurrent transactions), a child run's finish,
 * clock travel past the sleep branch, and drains. The model says which branch wins: the first to end
 * on the database clock (a sleep ends at its wake time; an event or a finish at or after it is too
 * late). Checked after every command: a notify matches the parent's wait exactly when the model says it
 * takes it; at the end, every parent completed with the model's winner, and its other branches are
 * cancelled, never matched.
 *
 * MODEL_RUNS sets the number of scenarios; a failure prints the seed and path to replay (MODEL_SEED,
 * MODEL_PATH).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const SLEEP_MINUTES = 60;
const KEYS = 3;

let ctx: TestContext;
beforeAll(async () => {
  ctx = await setupDatabase('model_groups');
});
afterAll(async () => {
  await ctx.cleanup();
});

type Branch = 'a' | 'b' | 'child' | 'expired';

/** What happened to one key's parent run, as the model sees it. */
interface ParentModel {
  childRunId: string;
  parentRunId: string;
  /** The model minutes of the drain that first ran the parent (its sleep ends SLEEP_MINUTES later). */
  firstDrain: number | null;
  /** The child was told to finish (it does at the next drain). */
  childTold: boolean;
  /** The winner once decided, with the event numbers that may have won (two when they raced). */
  winner: { key: Branch; candidates: number[] } | null;
}

class Model {
  minutes = 0;
  seq = 0;
  parents = new Map<number, ParentModel>();

  deadline(p: ParentModel): number | null {
    return p.firstDrain === null ? null : p.firstDrain + SLEEP_MINUTES;
  }

  /** Something for branch `key` of parent `p` ended now (an event, or the child's finish): it wins unless a branch won before or the sleep ended. */
  occur(p: ParentModel, key: Branch, candidates: number[]): boolean {
    if (p.winner) return false;
    const deadline = this.deadline(p);
    if (deadline !== null && this.minutes >= deadline) {
      p.winner = { key: 'expired', candidates: [] };
      return false;
    }
    p.winner = { key, candidates };
    return true;
  }

  /** Time passing: a parent whose sleep ended with no winner takes the sleep. */
  expire(): void {
    for (const p of this.parents.values()) {
      const deadline = this.deadline(p);
      if (!p.winner && deadline !== null && this.minutes >= deadline) p.winner = { key: 'expired', candidates: [] };
    }
  }
}

interface System {
  flow: DurableFlow;
  harness: TestHarness;
  child: { start(input: unknown): Promise<{ runId: string }> };
  parent: { start(input: unknown): Promise<{ runId: string }> };
  scenario: number;
}

type Command = fc.AsyncCommand<Model, System>;

class Start implements Command {
  constructor(readonly k: number) {}
  check = (m: Readonly<Model>) => !m.parents.has(this.k);
  async run(m: Model, s: System): Promise<void> {
    const child = await s.child.start({ k: this.k, scenario: s.scenario });
    const parent = await s.parent.start({ k: this.k, scenario: s.scenario, child: child.runId });
    m.parents.set(this.k, { childRunId: child.runId, parentRunId: parent.runId, firstDrain: null, childTold: false, winner: null });
  }
  toString = () => `start(${this.k})`;
}

class Notify implements Command {
  constructor(
    readonly k: number,
    readonly branches: ('a' | 'b')[],
  ) {}
  check = () => true;
  async run(m: Model, s: System): Promise<void> {
    const numbers = this.branches.map(() => ++m.seq);
    const results = await Promise.all(this.branches.map((b, i) => s.flow.notify(`g${b}`, { k: this.k, scenario: s.scenario, n: numbers[i] })));
    const p = m.parents.get(this.k);
    if (!p) return; // before the run started: no wait of it may take the event
    const rowsExist = p.firstDrain !== null;
    const before = p.winner;
    const wins = m.occur(p, this.branches.length === 1 ? this.branches[0]! : 'a', numbers);
    if (this.branches.length === 2 && wins) p.winner = { key: 'a', candidates: numbers }; // either may win a race
    const matched = results.reduce((sum, r) => sum + r.matchedWaits, 0);
    if (rowsExist) {
      // A parent already waiting: the notify matches its branch exactly when the event wins.
      expect(matched, `${this} matched (winner before: ${JSON.stringify(before)})`).toBe(wins ? 1 : 0);
    } else if (before) {
      expect(matched).toBe(0);
    }
  }
  toString = () => `notify(${this.k}, ${this.branches.join('+')})`;
}

class TellChild implements Command {
  constructor(readonly k: number) {}
  check = (m: Readonly<Model>) => m.parents.has(this.k) && !m.parents.get(this.k)!.childTold;
  async run(m: Model, s: System): Promise<void> {
    await s.flow.notify('gc', { k: this.k, scenario: s.scenario });
    m.parents.get(this.k)!.childTold = true;
  }
  toString = () => `tellChild(${this.k})`;
}

class Travel implements Command {
  constructor(readonly minutes: number) {}
  check = () => true;
  async run(m: Model, s: System): Promise<void> {
    await s.harness.travel(`${this.minutes} minutes`);
    m.minutes += this.minutes;
  }
  toString = () => `travel(${this.minutes}m)`;
}

class Drain implements Command {
  check = () => true;
  async run(m: Model, s: System): Promise<void> {
    // The model's order inside a drain: sleeps that ended, then children told to finish (each child
    // runs before or after its parent's first execution; either way it finishes after every event
    // sent before this drain, and before the parent's sleep, which starts now if it is new).
    m.expire();
    for (const p of m.parents.values()) {
      if (p.childTold && p.winner === null) {
        if (p.firstDrain === null || m.minutes < m.deadline(p)!) p.winner = { key: 'child', candidates: [] };
      }
      p.childTold = false;
      if (p.firstDrain === null) p.firstDrain = m.minutes;
    }
    await s.harness.drain();
  }
  toString = () => 'drain';
}

const commands = [
  fc.integer({ min: 0, max: KEYS - 1 }).map((k) => new Start(k)),
  fc.tuple(fc.integer({ min: 0, max: KEYS - 1 }), fc.constantFrom<('a' | 'b')[]>(['a'], ['b'], ['a', 'b'])).map(([k, b]) => new Notify(k, b)),
  fc.integer({ min: 0, max: KEYS - 1 }).map((k) => new TellChild(k)),
  fc.constantFrom(20, 30, 45, 70).map((n) => new Travel(n)),
  fc.constant(new Drain()),
];

let scenarios = 0;
let checked = 0;
const outcomes = new Map<string, number>();

describe('step.waitAny against a reference model', () => {
  it('settles every parent with the branch that ended first, and no loser ever matches', async () => {
    const flow = ctx.flow();
    await flow.migrate();
    const harness = createTestHarness(flow);
    // A child finishes once told; each parent races two events, its child and a sleep. Inputs carry the
    // scenario, so that events of one scenario never match another's runs.
    const child = flow.workflow('m_child', async ({ input, step }: WorkflowContext<{ k: number; scenario: number }>) => {
      await step.waitForEvent('told', { event: 'gc', match: { k: input.k, scenario: input.scenario } });
      return input.k;
    });
    const parent = flow.workflow('m_parent', async ({ input, step }: WorkflowContext<{ k: number; scenario: number; child: string }>) =>
      step.waitAny('race', {
        a: { event: 'ga', match: { k: input.k, scenario: input.scenario } },
        b: { event: 'gb', match: { k: input.k, scenario: input.scenario } },
        child: { workflow: input.child },
        expired: { sleep: `${SLEEP_MINUTES} minutes` },
      }),
    );
    const runs = Number(process.env.MODEL_RUNS ?? 60);
    const seed = process.env.MODEL_SEED === undefined ? undefined : Number(process.env.MODEL_SEED);
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 25, size: 'max' }), async (cmds) => {
        const scenario = ++scenarios;
        const model = new Model();
        const system: System = { flow, harness, child, parent, scenario };
        await fc.asyncModelRun(() => ({ model, real: system }), cmds);
        // The end: the children told, time past every sleep, everything drained.
        await new Drain().run(model, system);
        await new Travel(SLEEP_MINUTES + 1).run(model, system);
        await new Drain().run(model, system);
        checked += model.parents.size;
        for (const [k, p] of model.parents) {
          const run = (await flow.getRun(p.parentRunId))!;
          expect(run.status, `parent ${k}`).toBe('completed');
          const output = run.output as { key: Branch; value: { n?: number } | null };
          const kind = p.winner!.candidates.length === 2 ? 'race' : output.key;
          outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
          const expected = p.winner!;
          if (expected.candidates.length === 2) {
            expect(['a', 'b'], `parent ${k}`).toContain(output.key);
            expect(expected.candidates).toContain(output.value!.n);
          } else {
            expect(output.key, `parent ${k}`).toBe(expected.key);
            if (expected.key === 'a' || expected.key === 'b') expect(output.value!.n).toBe(expected.candidates[0]);
            if (expected.key === 'expired') expect(output.value).toBeNull();
          }
          const { rows } = await flow.pool.query<{ branch: string; status: string }>(
            `SELECT w.branch, w.status FROM ${flow.tables.waits} w JOIN ${flow.tables.runs} r ON r.id = w.workflow_run_id WHERE r.run_id = $1 ORDER BY w.id`,
            [p.parentRunId],
          );
          expect(rows.map((r) => `${r.branch}:${r.status}`)).toEqual(
            ['a', 'b', 'child', 'expired'].map((b) => `${b}:${b === output.key ? 'matched' : 'cancelled'}`),
          );
        }
      }),
      { numRuns: runs, seed, path: process.env.MODEL_PATH, endOnFailure: true },
    );
    // The scenarios did start runs and reach their end (a model that checks nothing passes anything).
    expect(checked).toBeGreaterThan(runs);
    console.log(`[model] ${scenarios} scenarios, ${checked} parent runs checked: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    // Every kind of winner came up.
    expect([...outcomes.keys()].sort()).toEqual(['a', 'b', 'child', 'expired', 'race']);
  }, 600_000);
});
