import type { TimelineWait } from '../read/timeline.js';
import { WORKFLOW_FINISHED_EVENT } from '../workflow/suspend.js';
import { stepFailures } from './chart.js';

/** What a run's attempts count, in the run page's words (the "Claims" card). */
const CLAIMS_HELP =
  'How many times a worker has claimed this run. Each claim replays the workflow from the top: finished steps return their stored results and do not run again, so claims are not step attempts.';

/** What a step's attempts count. */
const ATTEMPTS_HELP = "How many times this step's function ran: its first attempt and each retry after a failure. Failed attempts are listed below and drawn on the timeline.";

/**
 * A wait the run page offers to settle with **Send matching event**: pending, on an event (a wait for
 * a child run is settled by that run finishing, and a wait for a signal by a signal, not by an event).
 */
function sendable(wait: TimelineWait): boolean {
  return wait.status === 'pending' && wait.event !== WORKFLOW_FINISHED_EVENT && wait.signal === null && !wait.branch?.sleep;
}

/** The helpers and texts of the run page's templates (views/partials/run-body.ejs and its partials). */
export const RUN_PAGE_HELPERS = { CLAIMS_HELP, ATTEMPTS_HELP, sendable, stepFailures, WORKFLOW_FINISHED_EVENT };
