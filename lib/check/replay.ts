import type { ResolvedOptions } from '../config.js';
import { DurableFlowError } from '../errors.js';
import type { StepContext, StepRunOptions, WorkflowContext } from '../types.js';
import type { ClaimedRun, HistoryStep, WorkflowDefinition } from '../workflow/definition.js';
import type { ExecutionEnv } from '../workflow/env.js';
import { PATCH_KIND, ReplayLedger } from '../workflow/ledger.js';
import { createStepApi } from '../workflow/step-api.js';
import type { StepPrimitives } from '../workflow/step-api.js';
import { parseJson } from '../workflow/writes.js';

/** Where a run's stored history and the registered code part (flow.check). Step names; null where there is none. */
export interface Divergence {
  /** The stored position where they part (null when not tied to a stored step). */
  position: number | null;
  /** The stored step at that position. */
  stored: string | null;
  /** The step the code asks for there (null: the code asks for none, e.g. it returns). */
  requested: string | null;
  /** The same, in a sentence. */
  reason: string;
}

export interface CheckResult {
  runId: string;
  workflow: string;
  /** The run replays under the registered code up to its frontier (the first step its history lacks). */
  ok: boolean;
  divergence?: Divergence;
}

/** A step that never settles: the frontier (no stored row) or a stored step still in flight. */
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

const nothing = (): never => {
  throw new DurableFlowError('INVALID_STATE', 'flow.check() runs no step body');
};

/**
 * One run's replay for flow.check(): the workflow function is called with a step API whose primitives
 * return stored results (the same ReplayLedger as a real execution decides what is stored, what is a
 * kind change, a duplicate name, a patch's branch) and never run a body, write or wait. The first step
 * without a stored row, or a stored step still in flight, gets a promise that never settles.
 */
export class CheckReplay implements StepPrimitives {
  readonly run: ClaimedRun;
  readonly #ledger: ReplayLedger;
  readonly #history = new Map<string, HistoryStep>();
  /** Names asked for that have no stored row (the first one is the frontier). */
  readonly #fresh: string[] = [];
  #blocked = 0;
  #activity = 0;
  #divergence: Divergence | undefined;
  #settled: { ok: boolean; error?: unknown } | undefined;

  constructor(run: ClaimedRun, history: HistoryStep[]) {
    this.run = run;
    for (const step of history) this.#history.set(step.name, step);
    this.#ledger = new ReplayLedger(run, history, run.resumeSnapshot);
  }

  dbNow(): number {
    return Date.now();
  }

  fail(error: Error): Error {
    this.#divergence ??= { position: null, stored: null, requested: null, reason: error.message };
    return error;
  }

  #claim(name: string, kind: string): HistoryStep | undefined {
    this.#activity++;
    const stored = this.#history.get(name);
    if (stored && stored.kind !== kind) {
      this.#divergence ??= {
        position: stored.position, stored: name, requested: name,
        reason: `step "${name}" is stored as a ${stored.kind} step but the code calls it as a ${kind} step`,
      };
    }
    const registration = this.#ledger.register(name, kind);
    if (registration instanceof Error) throw this.fail(registration);
    return registration.row;
  }

  #replay<T>(name: string, kind: string): Promise<T> {
    const row = this.#claim(name, kind);
    const memo = this.#ledger.memoized(row);
    if (memo) return memo as Promise<T>;
    if (!row) this.#fresh.push(name);
    this.#blocked++;
    return never<T>();
  }

  runStep<T>(name: string, _options: StepRunOptions, fn: (context: StepContext) => T | Promise<T>): Promise<T> {
    const step = this.#replay<T>(name, 'run');
    if (typeof fn !== 'function') throw this.fail(new DurableFlowError('INVALID_ARGUMENT', `Expected step "${name}" to be given a function, got ${typeof fn}`));
    return step;
  }

  sleepStep(name: string): Promise<void> {
    return this.#replay<void>(name, 'sleep');
  }

  waitStep(name: string): Promise<unknown> {
    return this.#replay(name, 'wait');
  }

  waitGroupStep(name: string): Promise<unknown> {
    return this.#replay(name, 'wait');
  }

  patchStep(name: string): Promise<boolean> {
    const row = this.#claim(name, PATCH_KIND);
    return (this.#ledger.memoized(row) as Promise<boolean> | undefined) ?? Promise.resolve(this.#ledger.patchTaken());
  }

  /** Calls the handler and resolves with the verdict once it settles or goes quiet at its frontier (at most `timeoutMs`). */
  async check(definition: WorkflowDefinition, options: ResolvedOptions, timeoutMs: number): Promise<CheckResult> {
    const env = { options, notify: nothing, startChild: nothing } as unknown as ExecutionEnv;
    const quiet = () => undefined;
    let input: unknown;
    try {
      input = parseJson(this.run.input);
    } catch (error) {
      return this.#result({ position: null, stored: null, requested: null, reason: `its input is not valid JSON: ${String(error)}` });
    }
    const context: WorkflowContext = {
      input,
      step: createStepApi(this, env),
      log: { debug: quiet, info: quiet, warn: quiet, error: quiet },
      runId: this.run.runId,
      workflow: this.run.workflow,
      attempt: this.run.attempts,
    };
    Promise.resolve()
      .then(() => definition.handler(context))
      .then(
        () => (this.#settled = { ok: true }),
        (error: unknown) => (this.#settled = { ok: false, error }),
      );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = this.#activity;
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#divergence || this.#settled) break;
      if (seen !== this.#activity) continue;
      if (this.#blocked > 0) break; // at the frontier, or at a stored step still in flight
      if (Date.now() >= deadline) {
        const next = this.#ledger.unvisited()[0];
        if (!next) break;
        return this.#result({
          position: next.position, stored: next.name, requested: null,
          reason: `the code did not reach stored step "${next.name}" within ${timeoutMs} ms (it awaits something that is not a step)`,
        });
      }
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
    }
    return this.#verdict();
  }

  #verdict(): CheckResult {
    if (this.#divergence) return this.#result(this.#divergence);
    const next = this.#ledger.unvisited()[0];
    if (this.#settled && !this.#settled.ok) {
      // Under the old code it did not (the run would have failed): the new code fails it.
      const error = this.#settled.error;
      return this.#result({
        position: next?.position ?? null, stored: next?.name ?? null, requested: null,
        reason: `the code throws ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)} while replaying the stored history`,
      });
    }
    if (!next) return this.#result(undefined);
    const requested = this.#fresh[0];
    if (requested !== undefined) {
      return this.#result({
        position: next.position, stored: next.name, requested,
        reason: `the code calls new step "${requested}" where the history has step "${next.name}"`,
      });
    }
    if (this.#settled) {
      return this.#result({ position: next.position, stored: next.name, requested: null, reason: `the code returns before reaching stored step "${next.name}"` });
    }
    // Blocked at a stored step still in flight: what follows it is asked for once it settles.
    return this.#result(undefined);
  }

  #result(divergence: Divergence | undefined): CheckResult {
    const base = { runId: this.run.runId, workflow: this.run.workflow };
    return divergence ? { ...base, ok: false, divergence } : { ...base, ok: true };
  }
}
