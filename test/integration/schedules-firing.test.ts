import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { FIRE_BATCH } from '../../lib/schedules/fire.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let admin: DurableFlow;
beforeAll(async () => {
  ctx = await setupDatabase('schedules_firing');
  admin = ctx.flow();
  await admin.migrate();
});
afterEach(async () => {
  // A schedule left overdue would be named by the next test's flows.
  await admin.pool.query(`DELETE FROM durable_flow_schedules`);
});
afterAll(async () => {
  await ctx?.cleanup();
});

let seq = 0;

/** A flow of its own (its own clock) whose warnings are kept, with a workflow that returns its input. */
function setup(): { flow: DurableFlow; warnings: string[]; workflow: string } {
  const warnings: string[] = [];
  const flow = ctx.flow({ logger: { warn: (message) => void warnings.push(message), error: () => undefined } });
  const workflow = `fire_${++seq}`;
  flow.workflow(workflow, async ({ input }) => input);
  return { flow, warnings, workflow };
}

/** Makes the database refuse runs whose input has `refuse: 'yes'` (as it might refuse a row for a reason of its own) while `fn` runs. */
async function refusingRuns(flow: DurableFlow, fn: () => Promise<void>): Promise<void> {
  await flow.pool.query(`CREATE FUNCTION refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$`);
  await flow.pool.query(
    `CREATE TRIGGER refuse_run BEFORE INSERT ON durable_flow_workflow_runs FOR EACH ROW WHEN (NEW.input->>'refuse' = 'yes') EXECUTE FUNCTION refuse_run()`,
  );
  try {
    await fn();
  } finally {
    await flow.pool.query(`DROP TRIGGER refuse_run ON durable_flow_workflow_runs`);
    await flow.pool.query(`DROP FUNCTION refuse_run()`);
  }
}

describe('a firing batch', () => {
  it('fires its other schedules when one schedule’s run cannot be inserted, and leaves that one due', async () => {
    const { flow, warnings, workflow } = setup();
    const harness = createTestHarness(flow);
    await refusingRuns(flow, async () => {
      const names = Array.from({ length: 5 }, (_, i) => `${workflow}_${i}`);
      for (const [i, name] of names.entries()) {
        await flow.schedules.create(name, { workflow, cron: '* * * * *', input: { n: i, refuse: i === 2 ? 'yes' : 'no' } });
      }
      const slot = (await flow.schedules.get(names[0]!))!.nextAt!;
      await harness.travelTo(new Date(slot.getTime() + 1000));
      expect(await flow.schedules.fire()).toBe(4);
      const { rows } = await flow.pool.query<{ n: number; scheduled_for: Date }>(
        `SELECT (input->>'n')::int AS n, scheduled_for FROM durable_flow_workflow_runs WHERE workflow_name = $1 ORDER BY 1`,
        [workflow],
      );
      expect(rows.map((r) => [r.n, r.scheduled_for.toISOString()])).toEqual([0, 1, 3, 4].map((n) => [n, slot.toISOString()]));
      for (const name of names) {
        const info = (await flow.schedules.get(name))!;
        if (name === names[2]) {
          expect(info.nextAt).toEqual(slot); // still due: tried again at the next poll
          expect(info.lastRunId).toBeNull();
        } else {
          expect(info.nextAt!.getTime()).toBe(slot.getTime() + 60_000);
          expect(info.lastRunId).not.toBeNull();
        }
      }
      expect(warnings.filter((w) => w.includes('could not fire'))).toEqual([`Schedule "${names[2]}" could not fire; it is tried again at the next poll`]);
    });
  });

  it('that is full and fails ends the firing (its schedules, still due, are not taken again at once)', async () => {
    const { flow, warnings, workflow } = setup();
    const harness = createTestHarness(flow);
    await refusingRuns(flow, async () => {
      const slot = new Date(Math.ceil((await harness.now()).getTime() / 60_000) * 60_000 + 60_000);
      await flow.pool.query(
        `INSERT INTO durable_flow_schedules (name, workflow_name, cron, input, next_at)
         SELECT $1 || i, $2, '* * * * *', '{"refuse": "yes"}', $3 FROM generate_series(1, $4::int) i`,
        [`${workflow}_`, workflow, slot, FIRE_BATCH + 10],
      );
      await harness.travelTo(new Date(slot.getTime() + 1000));
      expect(await flow.schedules.fire()).toBe(0);
      expect(warnings.filter((w) => w.includes('could not fire'))).toHaveLength(FIRE_BATCH);
      const { rows } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM durable_flow_schedules WHERE workflow_name = $1 AND next_at = $2`, [workflow, slot]);
      expect(rows[0]!.n).toBe(FIRE_BATCH + 10);
    });
  });
});

describe('a schedule of a workflow no process registers', () => {
  it('is named in a warning once over a minute overdue, once per process, saying what to do', async () => {
    const { flow, warnings, workflow } = setup();
    const harness = createTestHarness(flow);
    const ghost = `ghost_${++seq}`;
    await flow.schedules.create(`${ghost}_a`, { workflow: ghost, cron: '0 * * * *' });
    await flow.schedules.create(`${ghost}_paused`, { workflow: ghost, cron: '0 * * * *', paused: true });
    await flow.schedules.create(`${workflow}_s`, { workflow, cron: '0 * * * *' });
    const slot = (await flow.schedules.get(`${ghost}_a`))!.nextAt!;
    const named = () => warnings.filter((w) => w.includes(ghost));
    // Half a minute late: not overdue yet.
    await harness.travelTo(new Date(slot.getTime() + 30_000));
    await flow.schedules.fire();
    expect(named()).toEqual([]);
    await harness.travelTo(new Date(slot.getTime() + 5 * 60_000));
    await flow.schedules.fire();
    expect(named()).toHaveLength(1);
    expect(named()[0]).toMatch(
      new RegExp(`^Schedule "${ghost}_a" is overdue by 5 min: no process fires it, and this one does not register its workflow "${ghost}"\\. Register workflow "${ghost}" in a worker process, or pause or delete the schedule\\.$`),
    );
    // Its own workflow's schedule it fires, and names not.
    expect(await flow.schedules.get(`${workflow}_s`)).toMatchObject({ lastSlot: slot });
    expect(warnings.filter((w) => w.includes(`${workflow}_s`))).toEqual([]);
    // A minute later it looks again: the schedule named already is not named again, a newly overdue one is.
    await flow.pool.query(`UPDATE durable_flow_schedules SET next_at = $2 WHERE name = $1`, [`${ghost}_a`, slot]);
    await flow.schedules.create(`${ghost}_b`, { workflow: ghost, cron: '0 0 1 1 *' });
    await flow.pool.query(`UPDATE durable_flow_schedules SET next_at = $2 WHERE name = $1`, [`${ghost}_b`, slot]);
    await harness.travel('2 minutes');
    await flow.schedules.fire();
    expect(named().map((w) => w.slice(0, w.indexOf(' is overdue')))).toEqual([`Schedule "${ghost}_a"`, `Schedule "${ghost}_b"`]);
  });
});
