/**
 * The reference model of the event-wait property tests: what the contract (DESIGN.md, Steps, Events
 * and "Trust") says must become of runs that wait for an event, given the commands applied to the
 * system. Pure TypeScript: no database, no clock, no engine code.
 *
 * The workflow modelled (see system.ts): optionally a step `before`, then wait `first` for event
 * `e` with match `{ k }`, optionally a second wait `second` for the same event, each with the same
 * optional timeout; a timed-out wait returns 'timeout'.
 *
 * Where the contract leaves a choice open, the model keeps every allowed behaviour as a separate
 * *world* (a complete state of the run), and observations of the real system (statuses after each
 * command, cancel()'s answer, whether a crash point was reached) discard the worlds they contradict.
 * A run whose worlds all get discarded did something the contract forbids.
 *
 * The open choice is where a wait's view of events begins. An event committed after the step before
 * the wait first began must match; one committed before the wait's earliest possible start must not.
 * Events in between may go either way: the wait's *cut* lies anywhere in that window.
 * - `first` without a step before it: the window is the instant of start() (no choice).
 * - `first` after `before`: from start() to the first execution of the run.
 * - `second`: from the event that satisfied `first` (never itself a match) to the execution that
 *   first reached `first` — crashes included: a wait reached by an execution that then died has begun.
 *
 * An execution stopped dead at a debug point keeps the run `running` until its lease expires; the
 * next drain after that takes the run over (from what is stored), unless the stuck execution goes on
 * first (resume: within its lease, as if it had only been slow). What it reached before it stopped
 * counts as begun.
 *
 * Time is counted in ticks of the flow clock (TICK_MS). Travels are whole ticks and timeouts end half
 * a tick off, so the real milliseconds that pass while a scenario runs never tip a comparison. A
 * wait's timeout runs from the suspension that stores it (as a durable timer does), and a wait whose
 * timeout has passed matches no event, whether or not a drain has processed the timeout yet.
 */
export const TICK_MS = 10 * 60_000;
/** The flows' lease, in ticks: a run stuck in a crashed execution is due again two ticks later. */
export const LEASE_TICKS = 1.5;

export const CRASH_POINTS = ['STEP_BEFORE_BODY', 'STEP_AFTER_BODY', 'SUSPEND_BEFORE_COMMIT', 'END_BEFORE_COMMIT'] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export interface RunSpec {
  k: number;
  before: boolean;
  second: boolean;
  /** Ticks (always n + 0.5), or null for a wait without timeout. */
  timeout: number | null;
}

export interface Payload {
  k: number;
  n: number;
}

/** An event the system stored (refused and duplicate notifies store none). */
export interface StoredEvent {
  /** Index of the command that stored it: the commit order. */
  at: number;
  /** The caller's event id, if any. */
  id?: string;
  name: string;
  payload: Payload;
  /** The flow clock (ticks) when it was stored. */
  offset: number;
}

export type Outcome = { event: StoredEvent } | 'timeout';

interface WaitState {
  /** Command index of the first execution that reached this wait (one that then crashed counts). */
  reachedAt: number | null;
  /** Events stored after this command index are visible to the wait (set when it is first reached). */
  cut: number | null;
  /** The suspension that creates the wait was committed. */
  durable: boolean;
  /** Ticks; set when the wait becomes durable (null: no timeout). */
  deadline: number | null;
  result: Outcome | null;
  /** The result is stored: replays return it without suspending. */
  stored: boolean;
}

export interface World {
  phase: 'queued' | 'suspended' | 'stuck' | 'done' | 'cancelled';
  /** A notify stored a result for the wait the run is suspended on: the run is due. */
  ready: boolean;
  firstExecAt: number | null;
  beforeStored: boolean;
  /** The flow clock when the execution now stuck claimed the run. */
  stuckOffset: number | null;
  waits: WaitState[];
}

/** A status as the runs table shows it, with the output of a completed run. */
export interface Observed {
  status: string;
  output?: unknown;
}

export class ModelMismatch extends Error {}

/** JSON with object keys sorted (jsonb does not keep the order they were written in). */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

function clone(world: World): World {
  return { ...world, waits: world.waits.map((w) => ({ ...w })) };
}

function dedupe(worlds: World[]): World[] {
  const seen = new Map<string, World>();
  for (const world of worlds) seen.set(JSON.stringify(world), world);
  return [...seen.values()];
}

function value(outcome: Outcome | null): unknown {
  return outcome === null ? null : outcome === 'timeout' ? 'timeout' : outcome.event.payload;
}

/** What the runs table must show for a run in this world. */
export function expected(spec: RunSpec, world: World): Observed {
  switch (world.phase) {
    case 'queued':
      return { status: 'enqueued' };
    case 'stuck':
      return { status: 'running' };
    case 'cancelled':
      return { status: 'cancelled' };
    case 'suspended':
      return { status: world.ready ? 'ready' : 'waiting' };
    case 'done': {
      const output: Record<string, unknown> = { first: value(world.waits[0]!.result) };
      if (spec.second) output.second = value(world.waits[1]!.result);
      return { status: 'completed', output };
    }
  }
}

export function describeObserved(observed: Observed): string {
  return observed.output === undefined ? observed.status : `${observed.status} ${JSON.stringify(observed.output)}`;
}

export interface Context {
  at: number;
  offset: number;
  events: readonly StoredEvent[];
}

/** One run: its workflow variant and the worlds the contract still allows. */
export class RunModel {
  worlds: World[];

  constructor(
    readonly index: number,
    readonly spec: RunSpec,
    readonly startedAt: number,
  ) {
    const wait = (): WaitState => ({ reachedAt: null, cut: null, durable: false, deadline: null, result: null, stored: false });
    this.worlds = [
      {
        phase: 'queued',
        ready: false,
        firstExecAt: null,
        beforeStored: false,
        stuckOffset: null,
        waits: spec.second ? [wait(), wait()] : [wait()],
      },
    ];
  }

  describe(): string {
    const { k, before, second, timeout } = this.spec;
    return `run #${this.index} (k=${k}${before ? ', step before' : ''}${second ? ', two waits' : ''}, timeout ${timeout === null ? 'none' : `${timeout} ticks`})`;
  }

  /** Keeps the worlds consistent with an observation; throws when none is. */
  keep(what: string, predicate: (world: World) => boolean, shown: () => string): void {
    const kept = this.worlds.filter(predicate);
    if (kept.length === 0) {
      const allowed = [...new Set(this.worlds.map((w) => describeObserved(expected(this.spec, w))))].join(' | ');
      throw new ModelMismatch(`${this.describe()}, ${what}: the system shows ${shown()}, the contract allows: ${allowed}`);
    }
    this.worlds = kept;
  }

  observe(what: string, observed: Observed): void {
    const json = canonical(observed);
    this.keep(
      what,
      (w) => canonical(expected(this.spec, w)) === json,
      () => describeObserved(observed),
    );
  }

  /** An event was stored: a pending wait that sees it and has not timed out takes it. */
  onEvent(event: StoredEvent): void {
    if (event.name !== 'e' || event.payload.k !== this.spec.k) return;
    this.worlds = dedupe(
      this.worlds.map((w0) => {
        if (w0.phase === 'done' || w0.phase === 'cancelled') return w0;
        const index = w0.waits.findIndex((w) => w.reachedAt !== null && w.result === null);
        const open = w0.waits[index];
        if (!open || event.at <= open.cut!) return w0;
        if (open.durable && open.deadline !== null && event.offset >= open.deadline) return w0;
        const world = clone(w0);
        const wait = world.waits[index]!;
        wait.result = { event };
        if (wait.durable) {
          wait.stored = true; // notify stores the payload as the wait step's result
          if (world.phase === 'suspended') world.ready = true;
        }
        return world;
      }),
    );
  }

  isDue(world: World, offset: number): boolean {
    switch (world.phase) {
      case 'queued':
        return true;
      case 'stuck':
        return offset - world.stuckOffset! >= LEASE_TICKS;
      case 'suspended': {
        if (world.ready) return true;
        const pending = world.waits.find((w) => !w.stored);
        return pending?.deadline !== null && pending?.deadline !== undefined && offset >= pending.deadline;
      }
      default:
        return false;
    }
  }

  /** A drain: every due world executes; with `stopAt`, the execution stops dead at that point if it gets there. */
  drain(ctx: Context, stopAt: CrashPoint | null): { world: World; hit: boolean }[] {
    return this.worlds.flatMap((world) =>
      this.isDue(world, ctx.offset) ? this.#execute(clone(world), ctx, stopAt) : [{ world, hit: false }],
    );
  }

  /** A stuck execution of this run goes on (see Model.resume). */
  execute(world: World, ctx: Context): World[] {
    return this.#execute(clone(world), ctx, null).map((o) => o.world);
  }

  #execute(world: World, ctx: Context, stopAt: CrashPoint | null): { world: World; hit: boolean }[] {
    const { spec } = this;
    world.ready = false;
    world.firstExecAt ??= ctx.at;
    const stuck = (w: World) => {
      w.phase = 'stuck';
      w.stuckOffset = ctx.offset;
      return [{ world: w, hit: true }];
    };
    if (spec.before && !world.beforeStored && (stopAt === 'STEP_BEFORE_BODY' || stopAt === 'STEP_AFTER_BODY'))
      return stuck(world);

    // The handler replays from the top; returns how this execution ends from wait `i` on.
    const from = (w: World, i: number): { world: World; hit: boolean }[] => {
      for (; i < w.waits.length; i++) {
        if (w.waits[i]!.stored) continue;
        if (w.waits[i]!.reachedAt === null) return this.#firstReach(w, i, ctx).flatMap((b) => suspend(b, i));
        return suspend(w, i);
      }
      if (stopAt === 'END_BEFORE_COMMIT') return stuck(w);
      w.phase = 'done';
      return [{ world: w, hit: false }];
    };
    // The suspension transaction at wait `i`: stores `before` and the wait, then settles what it can.
    const suspend = (w: World, i: number): { world: World; hit: boolean }[] => {
      // Only the first suspension of an execution can be where it stops: a later one comes after a commit.
      if (stopAt === 'SUSPEND_BEFORE_COMMIT') return stuck(w);
      if (spec.before) w.beforeStored = true;
      const wait = w.waits[i]!;
      if (!wait.durable) {
        wait.durable = true;
        wait.deadline = spec.timeout === null ? null : ctx.offset + spec.timeout;
      }
      if (wait.result === null && wait.deadline !== null && ctx.offset >= wait.deadline) wait.result = 'timeout';
      if (wait.result !== null) {
        wait.stored = true;
        return from(w, i + 1);
      }
      w.phase = 'suspended';
      return [{ world: w, hit: false }];
    };
    return from(world, 0);
  }

  /**
   * Wait `i` is reached for the first time: one world per place its cut may take in the window the
   * contract leaves open (see the header), each taking the first event it then sees.
   */
  #firstReach(world: World, i: number, ctx: Context): World[] {
    let low: number;
    let high: number;
    if (i === 0) {
      low = this.startedAt;
      high = this.spec.before ? world.firstExecAt! : this.startedAt;
    } else {
      const previous = world.waits[0]!;
      const matched = previous.result !== 'timeout' && previous.result !== null ? previous.result.event.at : null;
      low = matched ?? previous.cut!;
      high = Math.max(previous.reachedAt!, matched ?? -1);
    }
    const candidates = ctx.events.filter((e) => e.name === 'e' && e.payload.k === this.spec.k && e.at > low && e.at < ctx.at);
    const choices: { cut: number; result: Outcome | null }[] = candidates
      .filter((e) => e.at < high)
      .map((event) => ({ cut: event.at - 0.5, result: { event } }));
    const definite = candidates.find((e) => e.at > high);
    choices.push({ cut: high, result: definite ? { event: definite } : null });
    return choices.map(({ cut, result }) => {
      const w = clone(world);
      Object.assign(w.waits[i]!, { reachedAt: ctx.at, cut, result });
      return w;
    });
  }
}

/** The whole system: the clock, the stored events, the event ids and the runs. */
export class Model {
  /** Index of the command being applied (the order of everything that happens). */
  at = 0;
  offset = 0;
  readonly events: StoredEvent[] = [];
  readonly runs: RunModel[] = [];
  /** Event ids stored, with the content first stored under them. */
  readonly ids = new Map<string, { name: string; payload: Payload }>();
  #payloads = 0;

  next(): number {
    return ++this.at;
  }

  newPayload(k: number): Payload {
    return { k, n: ++this.#payloads };
  }

  start(spec: RunSpec): RunModel {
    const run = new RunModel(this.runs.length, spec, this.at);
    this.runs.push(run);
    return run;
  }

  store(name: string, payload: Payload, id: string | undefined): StoredEvent {
    const event: StoredEvent = { at: this.at, ...(id === undefined ? {} : { id }), name, payload, offset: this.offset };
    this.events.push(event);
    if (id !== undefined) this.ids.set(id, { name, payload });
    for (const run of this.runs) run.onEvent(event);
    return event;
  }

  #context(): Context {
    return { at: this.at, offset: this.offset, events: this.events };
  }

  /** Runs whose next execution, in a drain now, could reach `point`. */
  crashTargets(point: CrashPoint): RunModel[] {
    return this.runs.filter((run) => run.drain(this.#context(), point).some((o) => o.hit));
  }

  /** Runs stuck in an execution that still holds its lease, on the clock it claimed them on (see resume). */
  resumable(): RunModel[] {
    return this.runs.filter((run) =>
      run.worlds.every((w) => w.phase === 'stuck' && w.stuckOffset === this.offset && !run.isDue(w, this.offset)),
    );
  }

  /**
   * A stuck execution goes on from where it stopped, then its worker drains as usual. Its in-memory
   * state is what the world holds (a wait it reached keeps its cut), so it ends as an execution of the
   * stored state would. Only without travel since it stopped: an execution's clock is the one it
   * claimed the run with, and travel() moves only the flow's.
   */
  resume(run: RunModel): void {
    run.worlds = dedupe(run.worlds.flatMap((w) => run.execute(w, this.#context())));
    this.drain();
  }

  /** A drain; `crash` names the run whose execution stops at a point, and whether the system got there. */
  drain(crash?: { run: number; point: CrashPoint; hit: boolean }): void {
    const ctx = this.#context();
    for (const run of this.runs) {
      const target = crash?.run === run.index ? crash : undefined;
      const outcomes = run.drain(ctx, target?.point ?? null);
      if (target) {
        const kept = outcomes.filter((o) => o.hit === target.hit);
        if (kept.length === 0) {
          throw new ModelMismatch(
            `${run.describe()}: its execution ${target.hit ? 'reached' : 'did not reach'} ${target.point}, which the contract does not allow here`,
          );
        }
        run.worlds = dedupe(kept.map((o) => o.world));
      } else {
        run.worlds = dedupe(outcomes.map((o) => o.world));
      }
    }
  }

  travel(ticks: number): void {
    this.offset += ticks;
  }

  cancel(run: RunModel, answered: boolean): void {
    const finished = (w: World) => w.phase === 'done' || w.phase === 'cancelled';
    run.keep(
      'on cancel()',
      (w) => finished(w) !== answered,
      () => `cancel() returned ${answered}`,
    );
    run.worlds = dedupe(run.worlds.map((w) => (finished(w) ? w : { ...clone(w), phase: 'cancelled', ready: false })));
  }

  /**
   * A notify of `k` now would come after the event that satisfied a run's `first` wait while that
   * wait's suspension is not committed yet (the execution that reached it is stuck, or about to
   * commit): the event `second` must then see.
   */
  followsUncommittedMatch(k: number): boolean {
    return this.runs.some(
      (run) =>
        run.spec.k === k &&
        run.spec.second &&
        run.worlds.some(
          (w) => w.phase !== 'cancelled' && w.waits[0]!.reachedAt !== null && !w.waits[0]!.durable && w.waits[0]!.result !== null,
        ),
    );
  }

  /** A notify of `k` now would reach a wait whose timeout passed (no drain has processed it yet). */
  reachesExpiredWait(k: number): boolean {
    return this.runs.some(
      (run) =>
        run.spec.k === k &&
        run.worlds.some(
          (w) =>
            w.phase !== 'done' &&
            w.phase !== 'cancelled' &&
            w.waits.some((x) => x.durable && x.result === null && x.deadline !== null && this.offset >= x.deadline),
        ),
    );
  }
}
