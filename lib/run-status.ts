// A leaf module (no imports), so lib/operator/types.ts can name it without an import cycle through types.ts.

/** `completed`, `failed` and `cancelled` are terminal. */
export type RunStatus =
  | 'enqueued'
  | 'running'
  | 'sleeping'
  | 'waiting'
  | 'ready'
  | 'retrying'
  | 'paused'
  | 'completed'
  | 'failed'
  | 'cancelled';

/** Every run status, in the order of a run's life (the runs table's CHECK constraint allows exactly these). */
export const RUN_STATUSES: readonly RunStatus[] = [
  'enqueued', 'running', 'sleeping', 'waiting', 'ready', 'retrying', 'paused', 'completed', 'failed', 'cancelled',
];
