import type { RunWaitDetail, RunWaitState } from '../read/waiting.js';
import { COUNT_CAP } from '../read/waiting.js';

/** Why a run has not begun or is not executing now, as the run page and the run list say it. */
export interface WaitingReason {
  kind: 'concurrency' | 'throttled' | 'debounced' | 'delayed' | 'pinned' | 'due' | 'workflow-paused' | 'paused' | 'sleeping' | 'waiting' | 'retrying';
  /** A few words for the run list (`queued: concurrency`, `debounced`). */
  label: string;
  /** The reason as a sentence, for the run page. */
  detail: string;
  /** When the wait ends by itself (the run is due then), if it does. */
  until: Date | null;
  /** A debounced run's latest begin (`debounce.maxWait` from its first start). */
  latest?: Date | null;
  /** A parked run's concurrency key (without the workflow's name) and limit; on the run page its key's counts. */
  concurrency?: { key: string | null; limit: number | null; running: number | null; ahead: number | null };
  /** A run pinned to a version other than the viewer process's: that version. */
  version?: string;
  /** The deadline ahead of a run not finished: its start-by (not begun yet) or its timeout, the earlier. */
  deadline: { kind: 'startBy' | 'timeout'; at: Date; words: string } | null;
}

/** What the reason depends on beyond the run's columns. */
export interface WaitingContext {
  /** The database clock as the flow sees it (ms). */
  now: number;
  /** The viewer process's flow version. */
  version: string;
  workflowPaused: boolean;
  /** The run page's counts of a parked run's concurrency key (runWaitDetail). */
  counts?: Pick<RunWaitDetail, 'running' | 'ahead'>;
  /** The run page's pending waits (from its timeline), for the words of a waiting run. */
  waits?: { event: string; signal: string | null; branch: unknown }[];
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** `<workflow>:<key>` as stored (workflow/start.ts concurrencyOf) → the key; the workflow's name alone → null (one limit for the workflow). */
function keyOf(concurrencyKey: string | null, workflow: string): string | null {
  if (concurrencyKey === null || concurrencyKey === workflow) return null;
  return concurrencyKey.startsWith(`${workflow}:`) ? concurrencyKey.slice(workflow.length + 1) : concurrencyKey;
}

const capped = (n: number) => (n >= COUNT_CAP ? `${COUNT_CAP}+` : String(n));

function deadlineOf(state: RunWaitState): WaitingReason['deadline'] {
  const startBy = state.startedAt === null ? state.startBy : null;
  if (startBy && (!state.deadlineAt || startBy <= state.deadlineAt)) {
    return { kind: 'startBy', at: startBy, words: 'cancelled with DEADLINE_EXCEEDED if it has not begun by then' };
  }
  if (state.deadlineAt) return { kind: 'timeout', at: state.deadlineAt, words: 'fails with RUN_TIMEOUT if it has not finished by then' };
  return null;
}

function waitWords(waits: NonNullable<WaitingContext['waits']>): { label: string; detail: string } {
  if (waits.length === 0) return { label: 'waiting', detail: 'suspended until an event, a signal or a child run it waits for' };
  if (waits.some((w) => w.branch)) return { label: `waiting: ${waits.length} branches`, detail: `waits on ${waits.length} branches (waitAny / waitAll): see the step below` };
  const [first] = waits;
  if (waits.length === 1 && first!.signal !== null) return { label: `waiting for signal ${first!.signal}`, detail: `waits for the signal "${first!.signal}"` };
  if (waits.length === 1) return { label: `waiting for ${first!.event}`, detail: `waits for the event "${first!.event}"` };
  return { label: `waiting: ${waits.length} waits`, detail: `waits for ${waits.map((w) => (w.signal !== null ? `signal "${w.signal}"` : `"${w.event}"`)).join(', ')}` };
}

/**
 * Why a run of `workflow` waits, from its stored columns alone (null: it is executing, or finished).
 * The first reason that holds, in the order that decides when it begins: paused by hand, its workflow
 * paused, parked for a concurrency slot or by its throttle, folded by debounce, suspended, delayed; a
 * due run waits for a worker (of its pinned version).
 */
export function waitingReason(workflow: string, state: RunWaitState, ctx: WaitingContext): WaitingReason | null {
  if (TERMINAL.has(state.status) || state.status === 'running') return null;
  const deadline = deadlineOf(state);
  const until = state.wakeAt;
  const base = { deadline, until: null };
  if (state.status === 'paused') return { ...base, kind: 'paused', label: 'paused', detail: 'paused by an operator: it goes on where it was once resumed' };
  if (state.heldWakeAt !== null || ctx.workflowPaused) {
    return { ...base, kind: 'workflow-paused', label: 'workflow paused', detail: `its workflow ${workflow} is paused: no run of it is claimed until the workflow is resumed` };
  }
  if (state.concurrencyWaiting) {
    const key = keyOf(state.concurrencyKey, workflow);
    const running = ctx.counts?.running ?? null;
    const ahead = ctx.counts?.ahead ?? null;
    const limit = state.concurrencyLimit;
    const counts = `${running === null ? '' : `; ${capped(running)} running now`}${ahead === null ? '' : `, ${capped(ahead)} queued before it`}`;
    return {
      ...base,
      kind: 'concurrency',
      label: 'queued: concurrency',
      detail: `queued behind its concurrency limit: at most ${limit ?? '?'} run${limit === 1 ? '' : 's'}${key === null ? ` of ${workflow}` : ` of key "${key}"`} execute at once${counts}`,
      concurrency: { key, limit, running, ahead },
    };
  }
  const notDue = until !== null && until.getTime() > ctx.now;
  const begun = state.startedAt !== null;
  if (state.throttleKey !== null && !begun && notDue) {
    return { ...base, until, kind: 'throttled', label: 'throttled', detail: `held by its throttle${state.throttleKey ? ` (key "${state.throttleKey}")` : ''}: it begins when the window has room` };
  }
  if (state.debounceKey !== null && state.status === 'enqueued' && notDue) {
    return {
      ...base,
      until,
      latest: state.debounceDeadline,
      kind: 'debounced',
      label: 'debounced',
      detail: `debounced${state.debounceKey ? ` (key "${state.debounceKey}")` : ''}: another start of its key before then folds into it (last input wins) and pushes it back`,
    };
  }
  if (state.status === 'sleeping') return { ...base, until, kind: 'sleeping', label: 'sleeping', detail: 'sleeping (step.sleep): due again when the sleep ends' };
  if (state.status === 'waiting') return { ...base, until, kind: 'waiting', ...waitWords(ctx.waits ?? []) };
  if (state.status === 'retrying') return { ...base, until, kind: 'retrying', label: 'retrying', detail: 'a step failed: its next attempt is due then' };
  if (notDue) {
    const scheduled = state.scheduledFor !== null && !begun;
    return { ...base, until, kind: 'delayed', label: scheduled ? 'scheduled' : 'delayed', detail: scheduled ? 'a schedule slot: due at its time' : `started with a delay (delay / runAt): due then` };
  }
  if (state.pinnedVersion !== null && state.pinnedVersion !== ctx.version) {
    return {
      ...base,
      kind: 'pinned',
      label: `waits for version ${state.pinnedVersion}`,
      detail: `pinned to version ${state.pinnedVersion}: only a worker of that version claims it (this process runs ${ctx.version}; the Workflows page can move such runs)`,
      version: state.pinnedVersion,
    };
  }
  return { ...base, kind: 'due', label: 'due', detail: `due: it begins when a worker of queue "${state.queue}" has a free slot` };
}
