import type { Tables } from '../tables.js';
import { claimRuns, orphanedWorkflows } from './claimRuns.js';
import { commitBatch } from './commitBatch.js';
import { heartbeat } from './heartbeat.js';
import { notifyEvent, notifyEvents } from './insertEvent.js';
import { findRunsByKeys, insertRuns } from './insertRun.js';
import { insertWaits, lockWatchedRuns } from './insertWaits.js';
import { lockEventNames } from './lockEventNames.js';
import { resolveWaits, settleWaits } from './resolveWaits.js';
import { cancelRun, releaseRuns, retryRun, suspendRun } from './runTransitions.js';

/** A statement prepared once per connection (by name), then only bound and executed. */
export interface Statement {
  name: string;
  text: string;
}

/**
 * Every hot-path statement of one flow, rendered once for its schema. They run as named prepared
 * statements: Postgres parses and plans each once per connection instead of on every call.
 */
export function buildSql(t: Tables) {
  const texts = {
    insertRuns: insertRuns(t),
    findRunsByKeys: findRunsByKeys(t),
    claimRuns: claimRuns(t),
    orphanedWorkflows: orphanedWorkflows(t),
    commitBatch: commitBatch(t),
    lockEventNames: lockEventNames(t),
    insertWaits: insertWaits(t),
    lockWatchedRuns: lockWatchedRuns(t),
    resolveWaits: resolveWaits(t),
    settleWaits: settleWaits(t),
    suspendRun: suspendRun(t),
    releaseRuns: releaseRuns(t),
    heartbeat: heartbeat(t),
    notifyEvent: notifyEvent(t),
    notifyEvents: notifyEvents(t),
    cancelRun: cancelRun(t),
    retryRun: retryRun(t),
  };
  const prefix = `durable_flow_${t.schema}_`;
  return Object.fromEntries(
    Object.entries(texts).map(([key, text]) => [key, { name: `${prefix}${key}`, text }]),
  ) as { [K in keyof typeof texts]: Statement };
}

export type SqlTexts = ReturnType<typeof buildSql>;
