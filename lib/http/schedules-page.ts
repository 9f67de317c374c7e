import type { Request, RequestHandler, Response, Router } from 'express';
import { DateTime } from 'luxon';
import { DurableFlowError } from '../errors.js';
import type { ScheduleView } from '../read/schedules.js';
import { describeCron, parseCron } from '../schedules/cron.js';
import type { Schedules } from '../schedules/schedules.js';
import type { OperatorOptions } from '../types.js';
import type { ViewerReads } from './backend.js';
import { HttpError, onlyParameters, text } from './params.js';
import { formatRelative, isoTime } from './time.js';

/** What the Schedules page needs of the router that mounts it (router.ts's own helpers). */
export interface SchedulePageDeps {
  /** The buttons: writes, on the flow's pool. */
  schedules: Pick<Schedules, 'pause' | 'resume' | 'trigger'>;
  /** The page's reads, on the viewer's connections (lib/read/schedules.ts). */
  reads: Pick<ViewerReads, 'schedules'>;
  /** The flow's clock (ms): next fire times are counted from it. */
  now(): number;
  page(req: Request, res: Response, view: string, data: Record<string, unknown>, fragment?: string): Promise<void>;
  handle(fn: (req: Request, res: Response) => Promise<void>): RequestHandler;
  /** A CSRF-checked POST action answering where to go next (router.ts). */
  action(fn: (req: Request) => Promise<string | { location: string; json: Record<string, unknown> }>): RequestHandler;
  form: RequestHandler;
  /** The signed-in user and the form's reason, for the audit trail (router.ts). */
  who(req: Request): OperatorOptions;
}

const NEXT_FIRES = 5;
const RECENT_RUNS = 5;
/** A schedule whose next slot passed longer ago than this is flagged: no worker is firing it. */
export const OVERDUE_MS = 60_000;

/**
 * A time as the page shows it: `text`, which is `local` (in the schedule's zone) and ` (utc)` unless the
 * zone is UTC; `iso` for `<time datetime>`, `relative` on hover.
 */
export interface ZonedTime {
  iso: string;
  text: string;
  local: string;
  utc: string | null;
  relative: string;
}

/**
 * `Mon 9 Dec 09:00 Europe/Berlin (08:00 UTC)`: the time in `zone`, then in UTC (with its date when that
 * differs); `Mon 9 Dec 09:00 UTC` for a UTC schedule. Seconds when they are not 0, the year when it is
 * not the year of `now`.
 */
export function zonedTime(at: Date, zone: string, now: number): ZonedTime {
  const utc = DateTime.fromJSDate(at, { zone: 'utc' }).setLocale('en-GB');
  const local = utc.setZone(zone);
  const shown = local.isValid ? local : utc;
  const clock = (t: DateTime) => t.toFormat(t.second === 0 && t.millisecond === 0 ? 'HH:mm' : 'HH:mm:ss');
  const day = (t: DateTime) => t.toFormat(t.year === DateTime.fromMillis(now, { zone: t.zone }).year ? 'ccc d LLL' : 'ccc d LLL yyyy');
  const isUtc = !local.isValid || (local.offset === 0 && /^(Etc\/)?(UTC|GMT|Zulu|Universal)$/i.test(zone));
  const localText = `${day(shown)} ${clock(shown)} ${isUtc ? 'UTC' : zone}`;
  const utcText = isUtc ? null : `${day(utc) === day(local) ? '' : `${day(utc)} `}${clock(utc)} UTC`;
  return { iso: isoTime(at), text: utcText ? `${localText} (${utcText})` : localText, local: localText, utc: utcText, relative: formatRelative(at, now) };
}

/** The page's rows: each schedule with its cron in words, next fire times, last slot, skipped count and overdue flag. */
function rows(schedules: ScheduleView[], nowMs: number) {
  const now = new Date(nowMs);
  return schedules.map((schedule) => {
    let next: Date[] = [];
    try {
      next = schedule.paused ? [] : parseCron(schedule.cron, schedule.timezone).next(NEXT_FIRES, new Date(Math.max(now.getTime(), (schedule.nextAt?.getTime() ?? now.getTime()) - 1)));
    } catch {
      // A schedule written by another release with an expression this one refuses: shown without fire times.
    }
    const zoned = (at: Date) => zonedTime(at, schedule.timezone, nowMs);
    const overdue = !schedule.paused && schedule.nextAt !== null && schedule.nextAt.getTime() < nowMs - OVERDUE_MS;
    return {
      ...schedule,
      words: describeCron(schedule.cron),
      next,
      nextShown: next.map(zoned),
      lastSlotShown: schedule.lastSlot ? zoned(schedule.lastSlot) : null,
      skippedCount: schedule.skipped.reduce((sum, k) => sum + (k.count ?? 1), 0),
      overdue: overdue ? zoned(schedule.nextAt!) : null,
    };
  });
}

const VERBS = ['pause', 'resume', 'trigger'] as const;
type Verb = (typeof VERBS)[number];

/** The notice after a button: `?done=<verb>&schedule=<name>[&run=<runId>]` (the redirect of the action). */
function doneNotice(query: Request['query']) {
  const done = text(query.done, 'done', 10);
  if (done === null) return null;
  if (!(VERBS as readonly string[]).includes(done)) throw new HttpError(400, `Invalid done: expected one of ${VERBS.join(', ')}`);
  const schedule = text(query.schedule, 'schedule', 200);
  if (schedule === null) throw new HttpError(400, 'Invalid done: it needs the schedule');
  return { verb: done as Verb, schedule, runId: text(query.run, 'run', 255) };
}

/**
 * The viewer's Schedules page: each schedule's cron in words, its next fire times in its zone and in
 * UTC, its last slot, recent runs and skipped slots, a flag on an overdue one, with Pause/Resume/Trigger
 * buttons (POST, CSRF-checked like every action). Reads through the read side; the buttons through
 * flow.schedules.
 */
export function mountSchedulePage(router: Router, deps: SchedulePageDeps): void {
  const data = async () => rows(await deps.reads.schedules(RECENT_RUNS), deps.now());
  router.get('/schedules', deps.handle(async (req, res) => {
    onlyParameters(req.query, ['fragment', 'done', 'schedule', 'run']);
    const done = doneNotice(req.query);
    await deps.page(req, res, 'schedules', { schedules: await data(), done, live: 'runs' }, 'schedules-list');
  }));
  router.get('/api/schedules', deps.handle(async (_req, res) => {
    const schedules = (await data()).map(({ nextShown: _n, lastSlotShown: _l, overdue, ...schedule }) => ({ ...schedule, overdue: overdue !== null }));
    res.json({ schedules });
  }));
  const act = (verb: Verb) =>
    deps.action(async (req) => {
      const name = String(req.params.name);
      try {
        const result = await deps.schedules[verb](name, deps.who(req));
        const runId = result && typeof result === 'object' ? result.runId : null;
        const location = `/schedules?done=${verb}&schedule=${encodeURIComponent(name)}${runId ? `&run=${encodeURIComponent(runId)}` : ''}`;
        return { location, json: runId ? { runId } : {} };
      } catch (error) {
        if (error instanceof DurableFlowError && error.code === 'SCHEDULE_NOT_FOUND') throw new HttpError(404, error.message);
        throw error;
      }
    });
  for (const verb of VERBS) router.post(`/schedules/:name/${verb}`, deps.form, act(verb));
  router.all(VERBS.map((verb) => `/schedules/:name/${verb}`), (_req: Request, res: Response) => {
    res.set('Allow', 'POST').status(405).type('text/plain').send('Method not allowed: actions are POST forms with a CSRF token');
  });
}
