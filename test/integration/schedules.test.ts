import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await setupDatabase('schedules');
  await ctx.flow().migrate();
});
afterAll(async () => {
  await ctx?.cleanup();
});

const HOUR = 3_600_000;
let seq = 0;

/** A flow of its own (its own clock), with a workflow `name` that records its input, or waits for `release` when `wait`. */
function setup(options: { wait?: boolean } = {}): { flow: DurableFlow; harness: TestHarness; workflow: string } {
  const flow = ctx.flow();
  const workflow = `job_${++seq}`;
  flow.workflow(workflow, async ({ input, step, runId }) => {
    if (options.wait) await step.waitForEvent('release', { match: { runId } });
    return input;
  });
  return { flow, harness: createTestHarness(flow), workflow };
}

/** The runs of a workflow, oldest slot first, with their slot and status. */
async function runsOf(flow: DurableFlow, workflow: string): Promise<{ runId: string; status: string; slot: string | null }[]> {
  const { rows } = await flow.pool.query<{ run_id: string; status: string; scheduled_for: Date | null }>(
    `SELECT run_id, status, scheduled_for FROM durable_flow_workflow_runs WHERE workflow_name = $1 ORDER BY scheduled_for, id`,
    [workflow],
  );
  return rows.map((r) => ({ runId: r.run_id, status: r.status, slot: r.scheduled_for?.toISOString() ?? null }));
}

/** Moves the flow's clock to one second past `slot` (on time) and fires. */
async function fireAt(harness: TestHarness, slot: Date): Promise<void> {
  await harness.travelTo(new Date(slot.getTime() + 1000));
  await harness.drain();
}

async function nextAt(flow: DurableFlow, name: string): Promise<Date> {
  return (await flow.schedules.get(name))!.nextAt!;
}

describe('a schedule given in workflow options', () => {
  it('is created by migrate(), named after the workflow, and a slot starts one run whose scheduledFor is the slot', async () => {
    const flow = ctx.flow();
    flow.workflow('daily_report', { schedule: { cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', input: { kind: 'daily' } } }, async ({ input }) => input);
    await flow.migrate();
    const [schedule] = (await flow.schedules.list()).filter((s) => s.name === 'daily_report');
    expect(schedule).toMatchObject({ workflow: 'daily_report', cron: '0 9 * * 1-5', timezone: 'Europe/Berlin', paused: false, overlap: 'skip', catchUp: 'latest', lastRunId: null });
    const slot = schedule!.nextAt!;
    // 09:00 in Berlin on a weekday.
    expect(new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit', weekday: 'short' }).format(slot)).toMatch(/^(Mon|Tue|Wed|Thu|Fri) 09:00$/);
    const harness = createTestHarness(flow);
    await harness.drain();
    expect(await runsOf(flow, 'daily_report')).toEqual([]);
    await fireAt(harness, slot);
    await harness.drain();
    const runs = await runsOf(flow, 'daily_report');
    expect(runs).toEqual([{ runId: expect.any(String), status: 'completed', slot: slot.toISOString() }]);
    const run = await flow.getRun(runs[0]!.runId);
    expect(run?.scheduledFor?.toISOString()).toBe(slot.toISOString());
    expect(run?.output).toEqual({ kind: 'daily' });
    expect(run?.idempotencyKey).toBe(`schedule:daily_report:${slot.toISOString()}`);
    expect((await flow.schedules.get('daily_report'))!.lastRunId).toBe(runs[0]!.runId);
  });

  it('refuses a bad cron or zone when the workflow is registered, naming it', () => {
    const flow = ctx.flow();
    expect(() => flow.workflow('bad_cron', { schedule: { cron: '0 25 * * *' } }, async () => 1)).toThrow(/Expected `schedule.cron` to be a cron expression .* got "0 25 \* \* \*"/);
    expect(() => flow.workflow('bad_zone', { schedule: { cron: '0 1 * * *', timezone: 'Europe/Nowhere' } }, async () => 1)).toThrow(/`schedule.timezone`.*"Europe\/Nowhere"/);
  });

  it('is deleted once a process registers the workflow without the option; a schedule made with create() is never deleted so', async () => {
    const before = ctx.flow();
    before.workflow('weekly_digest', { schedule: { cron: '0 8 * * 1' } }, async () => 'digest');
    before.workflow('nightly_export', async () => 'export');
    await before.migrate();
    await before.schedules.create('nightly_export', { workflow: 'nightly_export', cron: '0 2 * * *' });
    expect((await before.schedules.get('weekly_digest'))?.origin).toBe('workflow');
    expect((await before.schedules.get('nightly_export'))?.origin).toBe('api');

    // The next deploy: the option is gone from weekly_digest; nightly_export never had one.
    const after = ctx.flow();
    after.workflow('weekly_digest', async () => 'digest');
    after.workflow('nightly_export', async () => 'export');
    await after.migrate();
    expect(await after.schedules.get('weekly_digest')).toBeNull();
    expect(await after.schedules.get('nightly_export')).toMatchObject({ origin: 'api', cron: '0 2 * * *' });

    // A process that does not register weekly_digest at all deletes nothing of it.
    const other = ctx.flow();
    other.workflow('weekly_digest', { schedule: { cron: '0 8 * * 1' } }, async () => 'digest');
    await other.migrate();
    const unrelated = ctx.flow();
    unrelated.workflow('something_else', async () => 1);
    await unrelated.migrate();
    expect((await unrelated.schedules.get('weekly_digest'))?.origin).toBe('workflow');
    await unrelated.schedules.delete('weekly_digest');
    await unrelated.schedules.delete('nightly_export');
  });
});

describe('the harness', () => {
  it("reset() puts the clock back and the options' schedules with it: their next slot counts from now again", async () => {
    const flow = ctx.flow();
    flow.workflow('hourly_job', { schedule: { cron: '0 * * * *' } }, async () => 1);
    const harness = createTestHarness(flow);
    await flow.schedules.create('runtime_only', { workflow: 'hourly_job', cron: '0 * * * *' });
    await harness.travel('3 days');
    await harness.drain();
    expect((await nextAt(flow, 'hourly_job')).getTime() - Date.now()).toBeGreaterThan(2 * 24 * HOUR);
    await harness.reset();
    expect(await flow.schedules.get('runtime_only')).toBeNull();
    const next = (await nextAt(flow, 'hourly_job')).getTime() - (await harness.now()).getTime();
    expect(next).toBeGreaterThan(0);
    expect(next).toBeLessThanOrEqual(HOUR);
  });
});

describe('flow.schedules', () => {
  it('create refuses bad options naming them; list, get, delete', async () => {
    const { flow, workflow } = setup();
    await expect(flow.schedules.create('bad', { workflow, cron: '* * *' })).rejects.toThrow(/Expected `cron`/);
    await expect(flow.schedules.create('bad', { workflow, cron: '* * * * *', timezone: 'Mars' })).rejects.toThrow(/Expected `timezone`/);
    await expect(flow.schedules.create('bad', { workflow, cron: '* * * * *', overlap: 'queue' as never })).rejects.toThrow(/`overlap` to be one of 'skip'/);
    await expect(flow.schedules.create('bad', { workflow, cron: '* * * * *', catchUp: 'some' as never })).rejects.toThrow(/`catchUp` to be one of/);
    expect(await flow.schedules.get('bad')).toBeNull();
    const created = await flow.schedules.create('acme_sync', { workflow, cron: '*/15 * * * *', timezone: 'UTC', input: { accountId: 'acme' } });
    expect(created).toMatchObject({ name: 'acme_sync', workflow, cron: '*/15 * * * *', input: { accountId: 'acme' }, overlap: 'skip', catchUp: 'latest' });
    expect(created.nextAt!.getTime() % (15 * 60_000)).toBe(0);
    expect((await flow.schedules.list()).map((s) => s.name)).toContain('acme_sync');
    expect(await flow.schedules.delete('acme_sync')).toBe(true);
    expect(await flow.schedules.delete('acme_sync')).toBe(false);
    await expect(flow.schedules.pause('acme_sync')).rejects.toThrow(expect.objectContaining({ code: 'SCHEDULE_NOT_FOUND' }));
  });

  it('refuses every method once its flow is closed, saying so', async () => {
    const { flow, workflow } = setup();
    await flow.schedules.create('closing', { workflow, cron: '* * * * *' });
    await flow.close();
    const closed = expect.objectContaining({ code: 'CLOSED' });
    await expect(flow.schedules.list()).rejects.toThrow(closed);
    await expect(flow.schedules.get('closing')).rejects.toThrow(closed);
    await expect(flow.schedules.pause('closing')).rejects.toThrow(closed);
    await expect(flow.schedules.trigger('closing')).rejects.toThrow(closed);
    await expect(flow.schedules.create('other', { workflow, cron: '* * * * *' })).rejects.toThrow(closed);
  });

  it('trigger starts a run now whatever the overlap, and it becomes the last run', async () => {
    const { flow, harness, workflow } = setup({ wait: true });
    await flow.schedules.create(`${workflow}_s`, { workflow, cron: '0 0 1 1 *', input: { n: 1 } });
    const first = await flow.schedules.trigger(`${workflow}_s`);
    const second = await flow.schedules.trigger(`${workflow}_s`);
    await harness.drain();
    expect(first.runId).not.toBe(second.runId);
    const run = await flow.getRun(second.runId);
    expect(run?.status).toBe('waiting');
    expect(Math.abs(run!.scheduledFor!.getTime() - (await harness.now()).getTime())).toBeLessThan(10_000);
    expect((await flow.schedules.get(`${workflow}_s`))!.lastRunId).toBe(second.runId);
  });

  it('pause, resume, trigger, backfill and delete are audited with their actor and reason', async () => {
    const { flow, workflow } = setup();
    const name = `${workflow}_s`;
    const who = { actor: 'ana', reason: 'maintenance' };
    await flow.schedules.create(name, { workflow, cron: '0 * * * *' });
    await flow.schedules.pause(name, who);
    await flow.schedules.resume(name, who);
    await flow.schedules.resume(name, who); // not paused: nothing done, nothing recorded
    const run = await flow.schedules.trigger(name, who);
    await flow.schedules.backfill(name, { from: '2026-06-01T10:00:00Z', to: '2026-06-01T12:00:00Z' }, who);
    expect(await flow.schedules.delete(name, who)).toBe(true);
    expect(await flow.schedules.delete(name, who)).toBe(false);
    const trail = await flow.audit({ workflow });
    expect(trail.map((e) => e.action)).toEqual(['schedule_delete', 'schedule_backfill', 'schedule_trigger', 'schedule_resume', 'schedule_pause']);
    expect(trail.every((e) => e.actor === 'ana' && e.reason === 'maintenance' && e.details.schedule === name)).toBe(true);
    expect(trail[1]!.details).toMatchObject({ runs: 2, from: '2026-06-01T10:00:00.000Z' });
    expect(trail[2]!.runId).toBe(run.runId);
    await expect(flow.schedules.pause(name, { actor: '' })).rejects.toThrow(/`actor`/);
  });

  it('backfill starts one run per slot in [from, to), and running it again starts none', async () => {
    const { flow, harness, workflow } = setup();
    const name = `${workflow}_s`;
    await flow.schedules.create(name, { workflow, cron: '0 * * * *' });
    const from = new Date('2026-06-01T10:00:00Z');
    const to = new Date('2026-06-01T15:00:00Z');
    const handles = await flow.schedules.backfill(name, { from, to });
    expect(handles).toHaveLength(5);
    const again = await flow.schedules.backfill(name, { from: '2026-06-01T09:00:00Z', to: '2026-06-01T15:30:00Z' });
    expect(again).toHaveLength(7);
    expect(again.slice(1, 6).map((h) => h.runId)).toEqual(handles.map((h) => h.runId));
    await harness.drain();
    const runs = await runsOf(flow, workflow);
    expect(runs.map((r) => r.slot)).toEqual([9, 10, 11, 12, 13, 14, 15].map((h) => `2026-06-01T${String(h).padStart(2, '0')}:00:00.000Z`));
    expect(runs.every((r) => r.status === 'completed')).toBe(true);
    await expect(flow.schedules.backfill(name, { from: '2026-01-01T00:00:00Z', to: '2026-06-01T00:00:00Z' })).rejects.toThrow(/more than 1000 slots/);
  });

  it('pause: the slots that pass while paused never fire; resume fires from the next slot after now', async () => {
    const { flow, harness, workflow } = setup();
    const name = `${workflow}_s`;
    await flow.schedules.create(name, { workflow, cron: '0 * * * *', catchUp: 'all' });
    await flow.schedules.pause(name);
    await harness.travel('5 hours');
    await harness.drain();
    expect(await runsOf(flow, workflow)).toEqual([]);
    await flow.schedules.resume(name);
    const next = await nextAt(flow, name);
    expect(next.getTime()).toBeGreaterThan((await harness.now()).getTime());
    expect(next.getTime() - (await harness.now()).getTime()).toBeLessThanOrEqual(HOUR);
    await harness.drain();
    expect(await runsOf(flow, workflow)).toEqual([]);
    await fireAt(harness, next);
    expect((await runsOf(flow, workflow)).map((r) => r.slot)).toEqual([next.toISOString()]);
  });
});

describe('catch-up after downtime (the harness travels)', () => {
  it("'latest' (default) fires the most recent missed slot once and records the others as missed", async () => {
    const { flow, harness, workflow } = setup();
    const name = `${workflow}_s`;
    await flow.schedules.create(name, { workflow, cron: '0 * * * *' });
    const first = await nextAt(flow, name);
    await harness.travelTo(new Date(first.getTime() + 4 * HOUR + 10 * 60_000));
    await harness.drain();
    const runs = await runsOf(flow, workflow);
    expect(runs.map((r) => r.slot)).toEqual([new Date(first.getTime() + 4 * HOUR).toISOString()]);
    const schedule = (await flow.schedules.get(name))!;
    expect(schedule.skipped).toEqual([{ slot: first.toISOString(), reason: 'missed', count: 4, until: new Date(first.getTime() + 3 * HOUR).toISOString() }]);
    expect(schedule.nextAt!.toISOString()).toBe(new Date(first.getTime() + 5 * HOUR).toISOString());
    await harness.drain();
    expect(await runsOf(flow, workflow)).toHaveLength(1);
  });

  it("'all' fires every missed slot, each once", async () => {
    const { flow, harness, workflow } = setup();
    const name = `${workflow}_s`;
    await flow.schedules.create(name, { workflow, cron: '0 * * * *', catchUp: 'all' });
    await harness.travel('1 day');
    await harness.drain();
    await harness.drain();
    const runs = await runsOf(flow, workflow);
    expect(runs).toHaveLength(24);
    expect(new Set(runs.map((r) => r.slot)).size).toBe(24);
    expect((await flow.schedules.get(name))!.skipped).toEqual([]);
  });

  it("'none' fires no missed slot, and the next on-time slot normally", async () => {
    const { flow, harness, workflow } = setup();
    const name = `${workflow}_s`;
    await flow.schedules.create(name, { workflow, cron: '0 * * * *', catchUp: 'none' });
    // Half an hour past the 24th slot: every due slot is missed, none on time.
    await harness.travelTo(new Date((await nextAt(flow, name)).getTime() + 23.5 * HOUR));
    await harness.drain();
    expect(await runsOf(flow, workflow)).toEqual([]);
    expect((await flow.schedules.get(name))!.skipped).toEqual([expect.objectContaining({ reason: 'missed', count: 24 })]);
    const next = await nextAt(flow, name);
    await fireAt(harness, next);
    expect((await runsOf(flow, workflow)).map((r) => r.slot)).toEqual([next.toISOString()]);
  });

  it("travel('1 day') fires a daily job once", async () => {
    const { flow, harness, workflow } = setup();
    await flow.schedules.create(`${workflow}_s`, { workflow, cron: '30 9 * * *', timezone: 'America/New_York' });
    await harness.travel('1 day');
    await harness.drain();
    expect(await runsOf(flow, workflow)).toHaveLength(1);
    await harness.travel('1 day');
    await harness.drain();
    expect(await runsOf(flow, workflow)).toHaveLength(2);
  });
});

describe('overlap', () => {
  /** A per-minute schedule whose runs wait for `release`; the first slot's run is waiting. */
  async function withWaitingRun(overlap: 'skip' | 'allow' | 'buffer_one' | 'cancel_other', minutes = 1) {
    const { flow, harness, workflow } = setup({ wait: true });
    const name = `${workflow}_s`;
    await flow.schedules.create(name, { workflow, cron: minutes === 1 ? '* * * * *' : `*/${minutes} * * * *`, overlap });
    const slot1 = await nextAt(flow, name);
    await fireAt(harness, slot1);
    const [first] = await runsOf(flow, workflow);
    expect(first).toMatchObject({ status: 'waiting', slot: slot1.toISOString() });
    const release = async (runId: string) => {
      await flow.notify('release', { runId });
      await harness.drain();
    };
    return { flow, harness, workflow, name, slot1, first: first!, release, slot: (n: number) => new Date(slot1.getTime() + (n - 1) * minutes * 60_000) };
  }

  it("'skip' starts no run while the previous one has not finished, and records the slot", async () => {
    const { flow, harness, workflow, name, first, release, slot } = await withWaitingRun('skip');
    await fireAt(harness, slot(2));
    expect(await runsOf(flow, workflow)).toHaveLength(1);
    expect((await flow.schedules.get(name))!.skipped).toEqual([{ slot: slot(2).toISOString(), reason: 'overlap', runId: first.runId }]);
    await release(first.runId);
    await fireAt(harness, slot(3));
    expect((await runsOf(flow, workflow)).map((r) => r.slot)).toEqual([slot(1), slot(3)].map((d) => d.toISOString()));
  });

  it("'allow' starts every slot's run", async () => {
    const { flow, harness, workflow, slot } = await withWaitingRun('allow');
    await fireAt(harness, slot(2));
    expect((await runsOf(flow, workflow)).map((r) => [r.slot, r.status])).toEqual([
      [slot(1).toISOString(), 'waiting'],
      [slot(2).toISOString(), 'waiting'],
    ]);
  });

  it("'buffer_one' keeps one slot until the previous run finishes, then starts it; more are skipped", async () => {
    const { flow, harness, workflow, name, first, release, slot } = await withWaitingRun('buffer_one');
    await fireAt(harness, slot(2));
    await fireAt(harness, slot(3));
    expect(await runsOf(flow, workflow)).toHaveLength(1);
    expect((await flow.schedules.get(name))!.skipped).toEqual([{ slot: slot(3).toISOString(), reason: 'overlap', runId: first.runId }]);
    await release(first.runId);
    await harness.drain();
    expect((await runsOf(flow, workflow)).map((r) => [r.slot, r.status])).toEqual([
      [slot(1).toISOString(), 'completed'],
      [slot(2).toISOString(), 'waiting'],
    ]);
  });

  it("'cancel_other' cancels the previous run and starts the new one", async () => {
    const { flow, harness, workflow, first, slot } = await withWaitingRun('cancel_other');
    await fireAt(harness, slot(2));
    expect((await runsOf(flow, workflow)).map((r) => [r.slot, r.status])).toEqual([
      [slot(1).toISOString(), 'cancelled'],
      [slot(2).toISOString(), 'waiting'],
    ]);
    expect((await flow.getRun(first.runId))!.error?.message).toMatch(/Cancelled by schedule/);
  });

  it('missed slots are not held back by overlap', async () => {
    const { flow, harness, workflow, name, slot } = await withWaitingRun('skip', 5);
    // Every 5 minutes; slots 2 to 6 pass while nothing fires, and slot 6 is two minutes old: missed.
    await harness.travelTo(new Date(slot(6).getTime() + 120_000));
    await harness.drain();
    // 'latest' starts the newest missed slot although slot 1's run still waits.
    expect((await runsOf(flow, workflow)).map((r) => [r.slot, r.status])).toEqual([
      [slot(1).toISOString(), 'waiting'],
      [slot(6).toISOString(), 'waiting'],
    ]);
    expect((await flow.schedules.get(name))!.skipped).toEqual([{ slot: slot(2).toISOString(), reason: 'missed', count: 4, until: slot(5).toISOString() }]);
  });
});

describe('firing from several flows at once', () => {
  it('never starts a slot twice', async () => {
    const workflow = `race_${++seq}`;
    const flows = [ctx.flow(), ctx.flow(), ctx.flow()];
    for (const flow of flows) flow.workflow(workflow, async () => 1);
    await flows[0]!.schedules.create(`${workflow}_s`, { workflow, cron: '* * * * * *', catchUp: 'all', overlap: 'allow' });
    for (let i = 0; i < 20; i++) {
      for (const flow of flows) flow.setClockOffset((i + 1) * 10_000);
      await Promise.all(flows.flatMap((flow) => [flow.schedules.fire(), flow.schedules.fire()]));
    }
    const runs = await runsOf(flows[0]!, workflow);
    const slots = runs.map((r) => r.slot);
    expect(new Set(slots).size).toBe(slots.length);
    expect(runs.length).toBeGreaterThanOrEqual(190);
  });
});
