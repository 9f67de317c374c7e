/**
 * The commands a generated scenario is made of, each applied to the real system and then to the
 * model with what the system answered, and the property that runs a scenario to its end: time moved
 * past every timeout and lease, everything drained, then the stuck executions released.
 *
 * Replay a failure with the seed and path fast-check prints: MODEL_SEED=… MODEL_PATH=… (and
 * MODEL_REPLAY=… with the replayPath shown in the counterexample, to skip re-shrinking); MODEL_RUNS
 * sets the number of scenarios.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { clearDebugPoints } from '../../lib/debug-point.js';
import { CRASH_POINTS, LEASE_TICKS, Model, ModelMismatch, TICK_MS } from './model.js';
import type { CrashPoint, Payload, RunSpec } from './model.js';
import type { System } from './system.js';

type Command = fc.AsyncCommand<Model, System>;

export interface ScenarioOptions {
  /** Generate notifies that reuse an id with other content (they must be refused). */
  conflicts: boolean;
  /** Allow a new event while a wait it matches has timed out unprocessed (it must not match). */
  expiredNotifies: boolean;
  /**
   * Allow a new event for a run whose `first` wait was satisfied by an earlier one while that wait's
   * suspension was not committed yet (it must go to `second`).
   */
  eventsAfterUncommittedMatch: boolean;
  maxCommands: number;
}

/** Every kind of scenario (the contract in full). */
export const EVERY_SCENARIO = { conflicts: true, expiredNotifies: true, eventsAfterUncommittedMatch: true } as const;

async function observe(model: Model, system: System, command: Command): Promise<void> {
  await system.observe(model, `after command ${model.at} (${command.toString()})`);
}

export class Start implements Command {
  constructor(readonly spec: RunSpec) {}
  check = () => true;
  async run(model: Model, system: System): Promise<void> {
    model.next();
    await system.start(this.spec);
    model.start(this.spec);
    await observe(model, system, this);
  }
  toString(): string {
    const { k, before, second, timeout } = this.spec;
    return `start(k=${k}${before ? ', before' : ''}${second ? ', second' : ''}${timeout === null ? '' : `, timeout=${timeout}`})`;
  }
}

type IdMode = 'none' | 'fresh' | 'redeliver' | 'conflict';

export class Notify implements Command {
  constructor(
    readonly name: 'e' | 'f',
    readonly k: number,
    readonly id: IdMode = 'none',
    readonly pick = 0,
    readonly options: Omit<ScenarioOptions, 'maxCommands'> = EVERY_SCENARIO,
  ) {}

  /** The id mode as played: reusing an id needs one stored first. */
  #mode(model: Model): IdMode {
    return (this.id === 'redeliver' || this.id === 'conflict') && model.ids.size === 0 ? 'fresh' : this.id;
  }

  check(model: Model): boolean {
    const mode = this.#mode(model);
    const stores = mode === 'none' || mode === 'fresh';
    if (!stores || this.name !== 'e') return true;
    if (!this.options.expiredNotifies && model.reachesExpiredWait(this.k)) return false;
    return this.options.eventsAfterUncommittedMatch || !model.followsUncommittedMatch(this.k);
  }

  async run(model: Model, system: System): Promise<void> {
    model.next();
    const mode = this.#mode(model);
    const { flow } = system;
    if (mode === 'redeliver' || mode === 'conflict') {
      const ids = [...model.ids.keys()];
      const id = ids[this.pick % ids.length]!;
      const first = model.ids.get(id)!;
      if (mode === 'redeliver') {
        const record = await flow.notify(first.name, first.payload, { id });
        const same =
          record.duplicate &&
          record.id === system.eventPks.get(id) &&
          record.name === first.name &&
          isDeepStrictEqual(record.payload, first.payload);
        if (!same)
          throw new ModelMismatch(`A redelivery of event id ${id} did not return the first event: ${JSON.stringify(record)}`);
      } else {
        // Other content under the same id: another payload, or the same payload under another name.
        const name = this.name === first.name ? first.name : this.name;
        const payload: Payload = name === first.name ? model.newPayload(this.k) : first.payload;
        let refused: unknown;
        let record: unknown;
        try {
          record = await flow.notify(name, payload, { id });
        } catch (error) {
          refused = error;
        }
        if ((refused as { code?: unknown } | undefined)?.code !== 'EVENT_ID_CONFLICT') {
          const got = refused === undefined ? `it returned ${JSON.stringify(record)}` : `it threw ${String(refused)}`;
          throw new ModelMismatch(
            `notify("${name}", ${JSON.stringify(payload)}, { id: "${id}" }) reuses an id stored for ${JSON.stringify(first)}: expected a DurableFlowError with code EVENT_ID_CONFLICT, but ${got}`,
          );
        }
      }
    } else {
      const payload = model.newPayload(this.k);
      const id = mode === 'fresh' ? `evt-${payload.n}` : undefined;
      const record = await flow.notify(this.name, payload, id === undefined ? undefined : { id });
      if (record.duplicate)
        throw new ModelMismatch(`A notify with ${id === undefined ? 'no id' : `the new id ${id}`} was taken for a duplicate`);
      if (id !== undefined) system.eventPks.set(id, record.id);
      model.store(this.name, payload, id);
    }
    await observe(model, system, this);
  }

  toString(): string {
    // Reusing an id before any is stored plays as a fresh id.
    const id = this.id === 'none' ? '' : this.id === 'fresh' ? ', fresh id' : `, ${this.id} id #${this.pick} or fresh`;
    return `notify(${this.name}, k=${this.k}${id})`;
  }
}

export class Drain implements Command {
  check = () => true;
  async run(model: Model, system: System): Promise<void> {
    model.next();
    await system.harness.drain();
    model.drain();
    await observe(model, system, this);
  }
  toString = () => 'drain()';
}

export class Travel implements Command {
  constructor(readonly ticks: number) {}
  check = () => true;
  async run(model: Model, system: System): Promise<void> {
    model.next();
    await system.harness.travel(this.ticks * TICK_MS);
    model.travel(this.ticks);
    await observe(model, system, this);
  }
  toString = () => `travel(${this.ticks} ticks)`;
}

export class Cancel implements Command {
  constructor(readonly pick: number) {}
  check = (model: Model) => model.runs.length > 0;
  async run(model: Model, system: System): Promise<void> {
    model.next();
    const run = model.runs[this.pick % model.runs.length]!;
    model.cancel(run, await system.flow.cancel(system.runIds[run.index]!));
    await observe(model, system, this);
  }
  toString = () => `cancel(run #${this.pick} mod runs)`;
}

/**
 * A drain in which one run's execution stops dead at `point`: the pick-th of the runs whose next
 * execution can get there (skipped when none can). Stuck, it holds its lease until it expires; it is
 * taken over by the first drain after that, or resumed, or released once the scenario has settled.
 */
export class Crash implements Command {
  constructor(
    readonly pick: number,
    readonly point: CrashPoint,
  ) {}
  check = (model: Model) => model.crashTargets(this.point).length > 0;
  async run(model: Model, system: System): Promise<void> {
    model.next();
    const targets = model.crashTargets(this.point);
    const run = targets[this.pick % targets.length]!;
    const hit = await system.crash(system.runIds[run.index]!, this.point);
    model.drain({ run: run.index, point: this.point, hit });
    await observe(model, system, this);
  }
  toString = () => `drain() with run #${this.pick} mod (runs that can get there) stopped dead at ${this.point}`;
}

/**
 * A stuck execution that still holds its lease goes on (the in-flight race: events arrived while it
 * was between its step and its commit), then its worker drains.
 */
export class Resume implements Command {
  constructor(readonly pick: number) {}
  check = (model: Model) => model.resumable().length > 0;
  async run(model: Model, system: System): Promise<void> {
    model.next();
    const runs = model.resumable();
    const run = runs[this.pick % runs.length]!;
    await system.resume(system.runIds[run.index]!);
    model.resume(run);
    await observe(model, system, this);
  }
  toString = () => `resume(stuck run #${this.pick} mod (stuck runs))`;
}

function commandArbitraries(options: ScenarioOptions): fc.Arbitrary<Command>[] {
  const spec = fc.record({
    k: fc.integer({ min: 0, max: 1 }),
    before: fc.boolean(),
    second: fc.boolean(),
    timeout: fc.option(
      fc.integer({ min: 0, max: 3 }).map((n) => n + 0.5),
      { nil: null },
    ),
  });
  const modes: IdMode[] = options.conflicts ? ['none', 'fresh', 'redeliver', 'conflict'] : ['none', 'fresh', 'redeliver'];
  const notify = fc
    .tuple(
      fc.constantFrom<('e' | 'f')[]>('e', 'e', 'e', 'e', 'f'),
      fc.constantFrom(0, 0, 1, 1, 2),
      fc.constantFrom(...modes),
      fc.nat(9),
    )
    .map(([name, k, id, pick]) => new Notify(name, k, id, pick, options));
  const start = spec.map((s) => new Start(s));
  const drain = fc.constant(new Drain());
  const travel = fc.integer({ min: 1, max: 3 }).map((ticks) => new Travel(ticks));
  const cancel = fc.nat(9).map((pick) => new Cancel(pick));
  const crash = fc.tuple(fc.nat(9), fc.constantFrom(...CRASH_POINTS)).map(([pick, point]) => new Crash(pick, point));
  const resume = fc.nat(9).map((pick) => new Resume(pick));
  // fc.commands picks uniformly among these: repeats weigh the mix.
  return [
    start,
    start,
    notify,
    notify,
    notify,
    notify,
    drain,
    travel,
    travel,
    crash,
    crash,
    crash,
    crash,
    resume,
    resume,
    cancel,
  ];
}

/** Moves time past every timeout and lease, draining after each move, until every run has reached its end state. */
export async function settle(model: Model, system: System): Promise<void> {
  const settled = () =>
    model.runs.every((run) =>
      run.worlds.every(
        (w) =>
          w.phase === 'done' ||
          w.phase === 'cancelled' ||
          (w.phase === 'suspended' && !w.ready && w.waits.every((x) => x.stored || x.deadline === null)),
      ),
    );
  // A round can take a stuck run over, process a timeout and create the next wait: three suffice.
  for (let round = 0; round < 4 && !settled(); round++) {
    await new Travel(4 + Math.ceil(LEASE_TICKS)).run(model, system);
    await new Drain().run(model, system);
  }
  if (!settled())
    throw new Error(
      `Model error: runs have not settled after the final drains: ${model.runs.map((r) => r.describe()).join(', ')}`,
    );
}

export interface Setup {
  system(): System;
}

/** Plays one scenario on a clean database, then settles it and checks the end: events stored, fences held. */
async function play(setup: Setup, commands: (model: Model, system: System) => Promise<void>): Promise<void> {
  const system = setup.system();
  await system.harness.reset();
  const model = new Model();
  let passed = false;
  try {
    await commands(model, system);
    await settle(model, system);
    await system.checkEvents(model);
    passed = true;
  } finally {
    clearDebugPoints();
    await system.releaseZombies(passed);
  }
}

/** The property: any scenario ends as the model says, with no refused event stored and no write from a fenced execution. */
export function eventWaitProperty(setup: Setup, options: ScenarioOptions) {
  const replayPath = process.env.MODEL_REPLAY;
  const commands = fc.commands(commandArbitraries(options), {
    maxCommands: options.maxCommands,
    size: 'medium',
    ...(replayPath ? { replayPath } : {}),
  });
  return fc.asyncProperty(commands, (cmds) =>
    play(setup, (model, system) => fc.asyncModelRun(() => ({ model, real: system }), cmds)),
  );
}

/** Plays a fixed scenario (a counterexample kept as a regression test); every command must apply. */
export function replayScenario(setup: Setup, commands: Command[]): Promise<void> {
  return play(setup, async (model, system) => {
    for (const command of commands) {
      if (!command.check(model)) throw new Error(`Test error: ${command.toString()} does not apply at command ${model.at + 1}`);
      await command.run(model, system);
    }
  });
}

/** fc.assert with the replay settings from the environment; failures print the seed, path and shrunk commands. */
export async function assertProperty(property: fc.IAsyncPropertyWithHooks<unknown>, numRuns: number): Promise<void> {
  const seed = process.env.MODEL_SEED === undefined ? undefined : Number(process.env.MODEL_SEED);
  await fc.assert(property, {
    numRuns: Number(process.env.MODEL_RUNS ?? numRuns),
    verbose: fc.VerbosityLevel.Verbose,
    ...(seed === undefined ? {} : { seed }),
    ...(process.env.MODEL_PATH ? { path: process.env.MODEL_PATH } : {}),
  });
}
