import type { Tables } from '../tables.js';
import { nowSql } from '../tables.js';
import { claimRuns } from './claimRuns.js';
import { commitSteps } from './commitSteps.js';
import { heartbeat } from './heartbeat.js';
import { findEventById, insertEvent, lockWaitingRuns, matchWaits } from './insertEvent.js';
import { findRunByKeys, insertRun } from './insertRun.js';
import { insertWaits } from './insertWaits.js';
import { lockEventNames } from './lockEventNames.js';
import { markWaitsMatched, markWaitsTimedOut, resolveWaits } from './resolveWaits.js';
import { cancelRun, releaseRuns, retryRun, suspendRun } from './runTransitions.js';

/** Every hot-path statement of one flow, rendered once for its schema. */
export function buildSql(t: Tables) {
  return {
    insertRun: insertRun(t),
    findRunByKeys: findRunByKeys(t),
    claimRuns: claimRuns(t),
    commitSteps: commitSteps(t, false),
    commitStepsAndTransition: commitSteps(t, true),
    lockEventNames: lockEventNames(t),
    insertWaits: insertWaits(t),
    resolveWaits: resolveWaits(t),
    markWaitsMatched: markWaitsMatched(t),
    markWaitsTimedOut: markWaitsTimedOut(t),
    suspendRun: suspendRun(t),
    releaseRuns: releaseRuns(t),
    heartbeat: heartbeat(t),
    insertEvent: insertEvent(t),
    findEventById: findEventById(t),
    lockWaitingRuns: lockWaitingRuns(t),
    matchWaits: matchWaits(t, nowSql('$4')),
    cancelRun: cancelRun(t),
    retryRun: retryRun(t),
  };
}

export type SqlTexts = ReturnType<typeof buildSql>;
