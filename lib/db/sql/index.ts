import type { Tables } from '../tables.js';
import { claimRunsSql, orphanedWorkflowsSql } from './claimRuns.js';
import { commitBatchSql } from './commitBatch.js';
import { expireRunSql } from './expireRuns.js';
import { heartbeatSql } from './heartbeat.js';
import { notifyEventSql, notifyEventsSql } from './insertEvent.js';
import { findRunsByKeysSql, insertRunsSql } from './insertRun.js';
import { insertWaitsSql, lockWatchedRunsSql } from './insertWaits.js';
import { lockEventNamesSql } from './lockEventNames.js';
import { resolveWaitsSql, settleGroupsSql, settleWaitsSql } from './resolveWaits.js';
import { releaseRunsSql, suspendRunSql } from './runTransitions.js';
import type { Statement } from './statement.js';

/**
 * Every hot-path statement of one flow, rendered once for its schema. They run as named prepared
 * statements: Postgres parses and plans each once per connection instead of on every call.
 */
export function buildSql(t: Tables) {
  const texts = {
    insertRuns: insertRunsSql(t),
    insertFreshRuns: insertRunsSql(t, false),
    findRunsByKeys: findRunsByKeysSql(t),
    claimRuns: claimRunsSql(t),
    orphanedWorkflows: orphanedWorkflowsSql(t),
    commitBatch: commitBatchSql(t),
    lockEventNames: lockEventNamesSql(t),
    insertWaits: insertWaitsSql(t),
    lockWatchedRuns: lockWatchedRunsSql(t),
    resolveWaits: resolveWaitsSql(t),
    settleWaits: settleWaitsSql(t),
    settleGroups: settleGroupsSql(t),
    suspendRun: suspendRunSql(t),
    releaseRuns: releaseRunsSql(t),
    expireRun: expireRunSql(t),
    heartbeat: heartbeatSql(t),
    notifyEvent: notifyEventSql(t),
    notifyEvents: notifyEventsSql(t),
  };
  const prefix = `durable_flow_${t.schema}_`;
  return Object.fromEntries(
    Object.entries(texts).map(([key, text]) => [key, { name: `${prefix}${key}`, text }]),
  ) as { [K in keyof typeof texts]: Statement };
}

export type SqlTexts = ReturnType<typeof buildSql>;
