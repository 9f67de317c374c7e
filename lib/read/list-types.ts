import type { RunStatus } from '../types.js';
import type { Cursor } from './cursor.js';

/**
 * Which runs a list holds: the top-level ones (the default: a fan-out of a thousand children does not
 * bury its parent), every run, or the children of one run.
 */
export type RunScope = { kind: 'top' } | { kind: 'all' } | { kind: 'children'; parentRunId: string };

export interface RunFilter {
  status: RunStatus | null;
  workflow: string | null;
  /** A run id whole or its start, or text in the input or in the error. */
  q: string | null;
  scope: RunScope;
  /** `?tag=key:value`, repeatable: runs carrying every one of them (index durable_flow_runs_tags). */
  tags: TagFilter[];
  /** Keyset cursor: runs with a smaller id (the list is in id order; its createdAt is kept for the links of earlier releases). */
  before: Cursor | null;
  limit: number;
}

export interface TagFilter {
  key: string;
  value: string;
}
