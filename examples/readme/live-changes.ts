// The README's "Live changes", run by test/docs/readme.test.ts.
import type { Change } from 'durable-flow';
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
export const seen: Change[] = [];
const dashboard = { update: (change: Change) => void seen.push(change) };

// #region readme
const unsubscribe = flow.onChange((change) => {
  // change.type: workflow_run.created | workflow_run.updated | workflow_step.created | workflow_step.updated |
  //   workflow_wait.created | workflow_wait.updated | workflow_event.created | workflow_log.created
  // change.runId (null for events), change.workflow, change.recordId, change.snapshot, change.payload
  dashboard.update(change);
});
// …
// unsubscribe();
// #endregion readme

export { flow, unsubscribe };
