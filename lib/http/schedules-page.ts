import type { Request, RequestHandler, Response, Router } from 'express';
import { DurableFlowError } from '../errors.js';
import { describeCron, parseCron } from '../schedules/cron.js';
import type { Schedules } from '../schedules/schedules.js';
import { HttpError, onlyParameters } from './params.js';

/** What the Schedules page needs of the router that mounts it (router.ts's own helpers). */
export interface SchedulePageDeps {
  schedules: Pick<Schedules, 'list' | 'pause' | 'resume' | 'trigger' | 'recentRuns'>;
  /** The flow's clock (ms): next fire times are counted from it. */
  now(): number;
  page(req: Request, res: Response, view: string, data: Record<string, unknown>, fragment?: string): Promise<void>;
  handle(fn: (req: Request, res: Response) => Promise<void>): RequestHandler;
  /** A CSRF-checked POST action answering where to go next (router.ts). */
  action(fn: (req: Request) => Promise<string | { location: string; json: Record<string, unknown> }>): RequestHandler;
  form: RequestHandler;
}

const NEXT_FIRES = 5;
const RECENT_RUNS = 5;

/**
 * The viewer's Schedules page: each schedule's cron in words, its next fire times, its recent runs and
 * skipped slots, with Pause/Resume/Trigger buttons (POST, CSRF-checked like every action).
 */
export function mountSchedulePage(router: Router, deps: SchedulePageDeps): void {
  const data = async () => {
    const list = await deps.schedules.list();
    const runs = await deps.schedules.recentRuns(list, RECENT_RUNS);
    const now = new Date(deps.now());
    return list.map((schedule) => {
      let next: Date[] = [];
      try {
        next = schedule.paused ? [] : parseCron(schedule.cron, schedule.timezone).next(NEXT_FIRES, new Date(Math.max(now.getTime(), (schedule.nextAt?.getTime() ?? now.getTime()) - 1)));
      } catch {
        // A schedule written by another release with an expression this one refuses: shown without fire times.
      }
      return { ...schedule, words: describeCron(schedule.cron), next, runs: runs.get(schedule.name) ?? [] };
    });
  };
  router.get('/schedules', deps.handle(async (req, res) => {
    onlyParameters(req.query, ['fragment']);
    await deps.page(req, res, 'schedules', { schedules: await data(), live: 'runs' }, 'schedules-list');
  }));
  router.get('/api/schedules', deps.handle(async (_req, res) => {
    res.json({ schedules: await data() });
  }));
  const named = (req: Request) => String(req.params.name);
  const act = (verb: 'pause' | 'resume' | 'trigger') =>
    deps.action(async (req) => {
      const name = named(req);
      try {
        const result = await deps.schedules[verb](name);
        return { location: '/schedules', json: result && typeof result === 'object' ? { runId: result.runId } : {} };
      } catch (error) {
        if (error instanceof DurableFlowError && error.code === 'SCHEDULE_NOT_FOUND') throw new HttpError(404, error.message);
        throw error;
      }
    });
  const verbs = ['pause', 'resume', 'trigger'] as const;
  for (const verb of verbs) router.post(`/schedules/:name/${verb}`, deps.form, act(verb));
  router.all(verbs.map((verb) => `/schedules/:name/${verb}`), (_req: Request, res: Response) => {
    res.set('Allow', 'POST').status(405).type('text/plain').send('Method not allowed: actions are POST forms with a CSRF token');
  });
}
