import { invalidOption } from '../config.js';
import { encodeJson } from '../json.js';
import type { ScheduleCatchUp, ScheduleOrigin, ScheduleOverlap, WorkflowSchedule } from '../types.js';
import { MAX_ID } from '../workflow/ids.js';
import { parseCron } from './cron.js';
import type { CronSchedule } from './cron.js';

const OVERLAP: ScheduleOverlap[] = ['skip', 'allow', 'buffer_one', 'cancel_other'];
const CATCH_UP: ScheduleCatchUp[] = ['latest', 'none', 'all'];

/** A schedule's settings, checked: what its row holds. */
export interface ScheduleSpec {
  name: string;
  workflow: string;
  cron: CronSchedule;
  /** The input as JSON text (null: none). */
  input: string | null;
  overlap: ScheduleOverlap;
  catchUp: ScheduleCatchUp;
  paused: boolean;
  /** 'workflow': from a workflow's `schedule` option (deleted once the option is gone); 'api': flow.schedules.create. */
  origin: ScheduleOrigin;
}

export function checkScheduleName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
    throw invalidOption('schedule name', name, 'a non-empty string of at most 200 characters');
  }
  return name;
}

/**
 * Checks a schedule's options (a bad one throws INVALID_OPTION naming it and what was expected).
 * `prefix` goes before option names in messages (`schedule.` for a workflow's option).
 */
export function resolveSchedule(name: unknown, options: (WorkflowSchedule & { workflow?: unknown; paused?: unknown }) | undefined, maxPayloadSize: number, prefix = '', origin: ScheduleOrigin = 'api'): ScheduleSpec {
  if (typeof options !== 'object' || options === null) throw invalidOption(prefix ? prefix.slice(0, -1) : 'schedule options', options, 'an object { cron, timezone?, input?, overlap?, catchUp? }');
  const workflow = options.workflow;
  if (typeof workflow !== 'string' || workflow.length === 0 || workflow.length > MAX_ID) {
    throw invalidOption(`${prefix}workflow`, workflow, 'the name of a workflow');
  }
  const overlap = options.overlap ?? 'skip';
  if (!OVERLAP.includes(overlap)) throw invalidOption(`${prefix}overlap`, overlap, `one of ${OVERLAP.map((o) => `'${o}'`).join(', ')}`);
  const catchUp = options.catchUp ?? 'latest';
  if (!CATCH_UP.includes(catchUp)) throw invalidOption(`${prefix}catchUp`, catchUp, `one of ${CATCH_UP.map((o) => `'${o}'`).join(', ')}`);
  if (options.paused !== undefined && typeof options.paused !== 'boolean') throw invalidOption(`${prefix}paused`, options.paused, 'a boolean');
  return {
    name: checkScheduleName(name),
    workflow,
    cron: parseCron(options.cron, options.timezone ?? 'UTC', prefix),
    input: encodeJson(options.input, `The input of schedule "${String(name)}"`, maxPayloadSize) ?? null,
    overlap,
    catchUp,
    paused: options.paused ?? false,
    origin,
  };
}

/** The schedule a workflow's `schedule` option describes: named after the workflow. */
export function workflowSchedule(workflow: string, schedule: WorkflowSchedule, maxPayloadSize: number): ScheduleSpec {
  return resolveSchedule(workflow, { ...schedule, workflow }, maxPayloadSize, 'schedule.', 'workflow');
}
