// The `on` workflow option (event triggers, issue 16): a leaf module, so lib/types.ts can name it.

/** An entry of the `on` workflow option: each stored event named `event` whose payload contains `match` starts one run. */
export interface EventTrigger {
  /** The event name (as given to `flow.notify`, ingest or `step.sendEvent`). */
  event: string;
  /** JSON the payload must contain (`payload @> match`, as waits match). Default `{}`: every event of the name. */
  match?: Record<string, unknown>;
}
