import { createHash } from 'node:crypto';
import type { WorkflowDefinition } from './definition.js';

/**
 * The default version of a flow: `code-` and the first 12 hex digits of a sha256 over its registered
 * workflows, sorted by name: each one's name, its handler's source (`toString()`) and the options that
 * change what its runs do (retries, backoff, queue, priority, recoveries, concurrency, cancelOn,
 * schedule, versioning), functions among them by their source. Same code, same version; any edit of a
 * handler gives another.
 */
export function codeVersion(definitions: Iterable<WorkflowDefinition>): string {
  const hash = createHash('sha256');
  const sorted = [...definitions].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const d of sorted) {
    const options = {
      retries: d.retries,
      backoff: d.backoff,
      queue: d.queue,
      priority: d.priority,
      maxRecoveries: d.maxRecoveries,
      concurrency: d.concurrency,
      cancelOn: d.cancelOn,
      schedule: d.schedule && { ...d.schedule, cron: { expression: d.schedule.cron.expression, timezone: d.schedule.cron.timezone } },
      versioning: d.versioning,
    };
    const json = JSON.stringify(options, (_key, value: unknown) => (typeof value === 'function' ? `fn:${value.toString()}` : value));
    hash.update(`${JSON.stringify(d.name)}\n${d.handler.toString()}\n${json}\n`);
  }
  return `code-${hash.digest('hex').slice(0, 12)}`;
}

/**
 * A flow's version: the `version` option, or codeVersion() of its workflows, computed once, when first
 * needed (its first start, claim or notify, or a read of `flow.version`): workflows registered after
 * that are not part of it, so register every workflow before starting anything.
 */
export class FlowVersion {
  readonly #explicit: () => string | undefined;
  readonly #definitions: () => Iterable<WorkflowDefinition>;
  #value: string | undefined;

  constructor(explicit: () => string | undefined, definitions: () => Iterable<WorkflowDefinition>) {
    this.#explicit = explicit;
    this.#definitions = definitions;
  }

  get value(): string {
    this.#value ??= this.#explicit() ?? codeVersion(this.#definitions());
    return this.#value;
  }
}
