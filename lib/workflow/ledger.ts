import type { StepId } from '../db/sql/commitBatch.js';
import { deserializeError } from '../errors.js';
import type { StoredError } from '../errors.js';
import type { ClaimedRun, HistoryStep } from './definition.js';
import { MAX_STEP_NAME } from './ids.js';
import { codeChanged, duplicateStepName, invalidStepName, stepKindChanged } from './replay-errors.js';
import { parseJson } from './writes.js';

/** The kind of a step.patched marker (its name: `patch:<id>`, its result: true or false). */
export const PATCH_KIND = 'patch';

/** A step name claimed by this execution: its stored row, and the mark a wait placed right after it uses. */
export interface Registration {
  row: HistoryStep | undefined;
  since: string;
}

/**
 * The replay ledger of one execution: the step names the workflow function has asked for so far, in
 * order, held against the run's stored history. It answers whether a step is replayed (and with what),
 * where a new step goes, and whether the code changed under the run. Pure bookkeeping in memory: it
 * never writes, waits or schedules; the execution acts on what it reports.
 */
export class ReplayLedger {
  readonly #run: Pick<ClaimedRun, 'runId' | 'workflow' | 'createdSnapshot'>;
  readonly #snapshot: string;
  readonly #history = new Map<string, HistoryStep>();
  readonly #stepIds = new Map<string, string>();
  readonly #requested = new Set<string>();
  /** Names asked for that have no stored row, since the last determinism check. */
  #newNames: string[] = [];
  /** Per step: the low-water mark a wait right after it uses (see resolveWaits). */
  readonly #stepMarks = new Map<string, string>();
  /** Which step an error came from, so that the run's stored error names it. */
  readonly #errorSteps = new WeakMap<object, string>();
  #lastStepName = '^';
  #position = 0;

  /** `snapshot` is the low-water mark of steps begun in this execution (see Execution). */
  constructor(run: Pick<ClaimedRun, 'runId' | 'workflow' | 'createdSnapshot'>, history: HistoryStep[], snapshot: string) {
    this.#run = run;
    this.#snapshot = snapshot;
    for (const step of history) {
      this.#history.set(step.name, step);
      this.#stepIds.set(step.name, step.id);
    }
    this.#position = history.reduce((max, step) => Math.max(max, (step.position ?? -1) + 1), 0);
  }

  /**
   * Claims a step name for this execution and returns its stored row, with the mark of the step
   * before it. A name that is invalid, used twice or of another kind than stored is returned as the
   * error that fails the run (a programming error in the workflow).
   */
  register(name: unknown, kind: string): Registration | Error {
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_STEP_NAME) {
      return invalidStepName(name, kind, this.#run.workflow, MAX_STEP_NAME);
    }
    if (this.#requested.has(name)) return duplicateStepName(name, this.#run.workflow);
    this.#requested.add(name);
    const row = this.#history.get(name);
    // A patch marker is no work: a new one (a patch added to the code) is what a patch is for.
    if (!row && kind !== PATCH_KIND) this.#newNames.push(name);
    if (row && row.kind !== kind && row.status === 'succeeded') {
      return stepKindChanged(name, this.#run.runId, row.kind, kind);
    }
    const since = this.#stepMarks.get(this.#lastStepName) ?? this.#run.createdSnapshot;
    this.#lastStepName = name;
    this.#stepMarks.set(name, row?.snapshot ?? this.#snapshot);
    return { row, since };
  }

  /** The stored outcome of a finished step, replayed as a settled promise; undefined if the step must run. */
  memoized(row: HistoryStep | undefined): Promise<unknown> | undefined {
    if (!row) return undefined;
    if (row.status === 'succeeded') return Promise.resolve(parseJson(row.result));
    if (row.status === 'failed' && row.error) {
      const error = deserializeError(row.error as StoredError);
      this.#errorSteps.set(error, row.name);
      return Promise.reject(error);
    }
    return undefined;
  }

  /** The position of a step in the run's history: its stored one, or the next free one. */
  positionOf(row: HistoryStep | undefined): number {
    return row?.position ?? this.#position++;
  }

  /**
   * A new step is about to run while stored steps have not been replayed: the code changed under
   * this run (a step renamed, removed or inserted). Running it could repeat a side effect under a new
   * name, so this returns the error the run fails with instead.
   */
  checkDeterminism(): Error | undefined {
    if (this.#newNames.length === 0) return undefined;
    const fresh = this.#newNames;
    this.#newNames = [];
    const unvisited = [...this.#history.values()].filter((step) => this.#unreached(step)).map((step) => step.name);
    if (unvisited.length === 0) return undefined;
    return codeChanged(this.#run.workflow, this.#run.runId, fresh, unvisited);
  }

  /**
   * The stored steps this replay has not asked for yet, by position. Patch markers are left out: a
   * marker never asked for again is a patch since removed from the code, which replays the same.
   */
  unvisited(): HistoryStep[] {
    return [...this.#history.values()]
      .filter((step) => this.#unreached(step))
      .sort((a, b) => (a.position ?? Number.MAX_SAFE_INTEGER) - (b.position ?? Number.MAX_SAFE_INTEGER));
  }

  #unreached(step: HistoryStep): boolean {
    return step.kind !== PATCH_KIND && !this.#requested.has(step.name);
  }

  /**
   * What a new patch marker records (step.patched): true (the new code) unless the stored history
   * already went past this point, i.e. holds a step this replay has not reached: the run got there
   * under the old code, so it keeps taking the old branch.
   */
  patchTaken(): boolean {
    for (const step of this.#history.values()) if (this.#unreached(step)) return false;
    return true;
  }

  /** The step a log line written now belongs to (the last one asked for). */
  get lastStepName(): string {
    return this.#lastStepName;
  }

  stepId(name: string): string | null {
    return this.#stepIds.get(name) ?? null;
  }

  /** Learns the ids of rows a commit inserted, as `[id, name]` pairs. */
  recordStepIds(rows: StepId[]): void {
    for (const [id, name] of rows) this.#stepIds.set(name, id);
  }

  /** Remembers that `error` came from step `name`. */
  attribute(error: unknown, name: string): void {
    if (typeof error === 'object' && error !== null) this.#errorSteps.set(error, name);
  }

  stepOf(error: unknown): string | undefined {
    return typeof error === 'object' && error !== null ? this.#errorSteps.get(error) : undefined;
  }
}
