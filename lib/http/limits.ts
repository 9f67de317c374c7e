import type { WorkflowDefinition } from '../workflow/definition.js';

/** The parts of a definition the Workflows page describes (every one optional: a workflow known only from its runs has none). */
export type LimitedDefinition = Partial<Pick<WorkflowDefinition, 'concurrency' | 'startControl' | 'timeoutMs' | 'priority' | 'versioning' | 'throttle' | 'on'>>;

/** One limit of a workflow: its option, a short summary (`concurrency 2 per key`) and the same in plain words. */
export interface WorkflowLimit {
  option: 'on' | 'concurrency' | 'throttle' | 'rateLimit' | 'debounce' | 'singleton' | 'timeout' | 'priority' | 'versioning';
  summary: string;
  words: string;
}

/** A duration in the largest unit that divides it (`500 ms`, `30 s`, `5 min`, `2 h`, `1 d`). */
export function shortDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['min', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  }
  return `${ms} ms`;
}

const runs = (n: number) => (n === 1 ? '1 run' : `${n} runs`);

/**
 * Every limit of a workflow, in the order a run meets them: what starts it (event triggers), at start
 * (singleton, rate limit, debounce),
 * before it begins (throttle, concurrency, priority, version), while it runs (timeout).
 */
export function workflowLimits(definition: LimitedDefinition): WorkflowLimit[] {
  const perKey = (key: unknown) => (key ? ' per key' : '');
  const ofKey = (key: unknown) => (key ? ' of one key' : '');
  const limits: WorkflowLimit[] = [];
  const { concurrency, startControl: control, throttle } = definition;
  for (const trigger of definition.on ?? []) {
    const match = Object.keys(trigger.match).length > 0 ? ` matching ${JSON.stringify(trigger.match)}` : '';
    limits.push({ option: 'on', summary: `on ${trigger.event}`, words: `each stored event "${trigger.event}"${match} starts one run, with its payload as input` });
  }
  if (control?.singleton) {
    const { mode, key } = control.singleton;
    limits.push({
      option: 'singleton',
      summary: `singleton (${mode})${perKey(key)}`,
      words: `one run${ofKey(key)} at a time: a start while one is unfinished ${mode === 'skip' ? 'returns that run' : 'cancels it and starts anew'}`,
    });
  }
  if (control?.rateLimit) {
    const { limit, periodMs, key } = control.rateLimit;
    limits.push({
      option: 'rateLimit',
      summary: `rate limit ${limit} per ${shortDuration(periodMs)}${perKey(key)}`,
      words: `at most ${limit === 1 ? '1 start' : `${limit} starts`}${ofKey(key)} accepted in any ${shortDuration(periodMs)}; the others become runs cancelled with RATE_LIMITED`,
    });
  }
  if (control?.debounce) {
    const { periodMs, maxWaitMs, key } = control.debounce;
    limits.push({
      option: 'debounce',
      summary: `debounce ${shortDuration(periodMs)}${maxWaitMs === undefined ? '' : `, max wait ${shortDuration(maxWaitMs)}`}${perKey(key)}`,
      words: `starts${ofKey(key)} within ${shortDuration(periodMs)} of each other fold into one run with the last input, begun ${shortDuration(periodMs)} after the last${maxWaitMs === undefined ? '' : ` (at most ${shortDuration(maxWaitMs)} after the first)`}`,
    });
  }
  if (throttle) {
    limits.push({
      option: 'throttle',
      summary: `throttle ${throttle.limit} per ${shortDuration(throttle.periodMs)}${perKey(throttle.key)}`,
      words: `at most ${runs(throttle.limit)}${ofKey(throttle.key)} begin in any ${shortDuration(throttle.periodMs)}; the others wait their turn, none is dropped`,
    });
  }
  if (concurrency) {
    limits.push({
      option: 'concurrency',
      summary: `concurrency ${concurrency.limit}${perKey(concurrency.key)}`,
      words: `at most ${runs(concurrency.limit)}${ofKey(concurrency.key)} execute at once; the others wait in line`,
    });
  }
  if (definition.priority !== undefined && definition.priority !== 0) {
    limits.push({ option: 'priority', summary: `priority ${definition.priority}`, words: `claimed ${definition.priority < 0 ? 'before' : 'after'} runs of priority 0 of its queue (lower first)` });
  }
  if (definition.versioning === 'pinned') {
    limits.push({ option: 'versioning', summary: 'pinned to its version', words: 'a run is claimed only by workers of the version that started it' });
  }
  if (definition.timeoutMs !== undefined) {
    const at = shortDuration(definition.timeoutMs);
    limits.push({ option: 'timeout', summary: `timeout ${at}`, words: `a run not finished ${at} after its start fails with RUN_TIMEOUT` });
  }
  return limits;
}
