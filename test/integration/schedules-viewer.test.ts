import express from 'express';
import request from 'supertest';
import { DateTime } from 'luxon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

let ctx: TestContext;
let flow: DurableFlow;
let app: express.Express;

beforeAll(async () => {
  ctx = await setupDatabase('schedview');
  flow = ctx.flow();
  flow.workflow('report', { schedule: { cron: '0 9 * * 1-5', timezone: 'Europe/Berlin' } }, async () => 'ok');
  await flow.migrate();
  await flow.schedules.create('acme_sync', { workflow: 'report', cron: '*/15 * * * *' });
  // A schedule of a workflow no process registers: nothing fires it, its slot passes.
  await flow.schedules.create('orphan', { workflow: 'ghost', cron: '*/5 * * * *' });
  await flow.pool.query(
    `UPDATE durable_flow_schedules SET next_at = now() - interval '7 minutes', last_slot = '2026-06-01T10:10:00Z',
            skipped = '[{"slot": "2026-06-01T10:05:00Z", "reason": "overlap"}, {"slot": "2026-06-01T09:45:00Z", "reason": "missed", "count": 4, "until": "2026-06-01T10:00:00Z"}]'
     WHERE name = 'orphan'`,
  );
  app = express();
  app.use('/df', flow.router({ allowUnauthenticated: true }));
});
afterAll(async () => {
  await ctx?.cleanup();
});

async function tokenFor(path: string) {
  const page = await request(app).get(`/df${path}`);
  const cookie = page.headers['set-cookie']![0]!.split(';')[0]!;
  const token = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
  return { page, cookie, token };
}

describe('the Schedules page', () => {
  it('shows each schedule with its cron in words, its next fire times and its runs', async () => {
    await flow.schedules.backfill('acme_sync', { from: '2026-06-01T10:00:00Z', to: '2026-06-01T10:30:00Z' });
    await createTestHarness(flow).drain();
    const page = await request(app).get('/df/schedules');
    expect(page.status).toBe(200);
    expect(page.text).toContain('href="/df/schedules" class="current"');
    const row = (name: string) => page.text.slice(page.text.indexOf(`data-schedule="${name}"`)).split('</tr>')[0]!;
    expect(row('report')).toContain('At 09:00, Monday through Friday');
    expect(row('report')).toContain('Europe/Berlin');
    expect(row('report').match(/<li><time/g)).toHaveLength(5);
    // Next fire times in the schedule's zone, then in UTC; the datetime is the same instant.
    const fires = [...row('report').matchAll(/<li><time datetime="([^"]+)" title="[^"]*">(.+?)<\/time>/g)];
    expect(fires).toHaveLength(5);
    for (const [, iso, shown] of fires) {
      const berlin = DateTime.fromISO(iso!, { zone: 'Europe/Berlin' }).setLocale('en-GB');
      expect(shown).toBe(`${berlin.toFormat('ccc d LLL')} 09:00 Europe/Berlin <span class="utc">(${berlin.toUTC().toFormat('HH:mm')} UTC)</span>`);
      expect(['07:00', '08:00']).toContain(berlin.toUTC().toFormat('HH:mm'));
    }
    expect(row('report')).toContain('last slot: none yet');
    // A UTC schedule says UTC once; its last slot is the backfill's newest.
    expect(row('acme_sync')).toMatch(/<li><time datetime="[^"]+" title="[^"]*">[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2}( \d{4})? \d\d:(00|15|30|45) UTC<\/time>/);
    expect(row('acme_sync')).toContain('last slot: none yet');
    expect(row('orphan')).toMatch(/last slot: <time datetime="2026-06-01T10:10:00.000Z" title="[^"]+ ago">Mon 1 Jun( 2026)? 10:10 UTC<\/time>/);
    expect(row('orphan')).toContain('<span class="skipped-count">5</span>');
    expect(row('orphan')).toContain('missed ×4');
    expect(row('acme_sync')).not.toContain('overdue');
    expect(row('acme_sync')).toContain('Every 15 minutes');
    expect(row('acme_sync').match(/\/df\/runs\//g)).toHaveLength(2);
    expect(row('acme_sync')).toContain('<span class="skipped-count">0</span>');
    // Overdue: not paused, its slot more than a minute past.
    expect(row('orphan')).toContain('class="overdue"');
    expect(row('orphan')).toContain('no worker registers workflow <code>ghost</code>?');
    expect(row('orphan')).toMatch(/due <time datetime="[^"]+" title="[^"]+ UTC">\d+ min ago<\/time>: no worker/);
    const api = await request(app).get('/df/api/schedules');
    const acme = api.body.schedules.find((s: { name: string }) => s.name === 'acme_sync');
    expect(acme.runs.map((r: { scheduledFor: string }) => r.scheduledFor)).toEqual(['2026-06-01T10:15:00.000Z', '2026-06-01T10:00:00.000Z']);
    expect(acme.next).toHaveLength(5);
    expect(acme.overdue).toBe(false);
    expect(api.body.schedules.find((s: { name: string }) => s.name === 'orphan').overdue).toBe(true);
  });

  it('pauses, resumes and triggers with a valid CSRF token, and refuses without one', async () => {
    const { cookie, token } = await tokenFor('/schedules');
    const refused = await request(app).post('/df/schedules/report/pause').set('Cookie', cookie).type('form').send({});
    expect(refused.status).toBe(403);
    expect((await flow.schedules.get('report'))!.paused).toBe(false);
    const paused = await request(app).post('/df/schedules/report/pause').set('Cookie', cookie).type('form').send({ _csrf: token, reason: 'holiday' });
    expect(paused.status).toBe(303);
    expect(paused.headers.location).toBe('/df/schedules?done=pause&schedule=report');
    expect((await flow.schedules.get('report'))!.paused).toBe(true);
    const page = await request(app).get(`${paused.headers.location}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('Paused <strong>report</strong>.');
    expect(page.text).toContain('action="/df/schedules/report/resume"');
    expect(page.text).toContain('<span class="badge waiting">paused</span>');
    const resumed = await request(app).post('/df/schedules/report/resume').set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(resumed.status).toBe(303);
    expect((await flow.schedules.get('report'))!.paused).toBe(false);
    const triggered = await request(app).post('/df/schedules/report/trigger').set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token });
    expect(triggered.status).toBe(200);
    expect((await flow.getRun(triggered.body.runId))!.workflow).toBe('report');
    const formTrigger = await request(app).post('/df/schedules/report/trigger').set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(formTrigger.status).toBe(303);
    const location = formTrigger.headers.location as string;
    const runId = /&run=([^&]+)$/.exec(location)![1]!;
    const after = await request(app).get(location);
    expect(after.text).toContain(`Triggered <strong>report</strong>: run <a href="/df/runs/${runId}">`);
    expect(after.text.slice(after.text.indexOf('data-schedule="report"')).split('</tr>')[0]).toContain(`/df/runs/${runId}`);
    expect((await request(app).get('/df/schedules?done=explode&schedule=report')).status).toBe(400);
    // Each button is in the audit trail (no signed-in user here: allowUnauthenticated).
    const trail = (await flow.audit({ workflow: 'report' })).filter((e) => e.action.startsWith('schedule_')).slice(0, 4);
    expect(trail.map((e) => e.action)).toEqual(['schedule_trigger', 'schedule_trigger', 'schedule_resume', 'schedule_pause']);
    expect(trail[3]).toMatchObject({ actor: null, reason: 'holiday', details: { schedule: 'report' } });
    expect(trail[0]!.runId).toBe(runId);
    expect((await request(app).get('/df/schedules?sort=name')).status).toBe(400);
    const missing = await request(app).post('/df/schedules/nope/trigger').set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token });
    expect(missing.status).toBe(404);
    expect((await request(app).get('/df/schedules/report/trigger')).status).toBe(405);
  });

  it('is behind the access check like every viewer page', async () => {
    const closed = express();
    closed.use('/df', flow.router({}));
    expect((await request(closed).get('/df/schedules')).status).toBe(403);
    expect((await request(closed).post('/df/schedules/report/trigger')).status).toBe(403);
  });
});
