import express from 'express';
import request from 'supertest';
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
    expect(row('acme_sync')).toContain('Every 15 minutes');
    expect(row('acme_sync').match(/\/df\/runs\//g)).toHaveLength(2);
    const api = await request(app).get('/df/api/schedules');
    const acme = api.body.schedules.find((s: { name: string }) => s.name === 'acme_sync');
    expect(acme.runs.map((r: { scheduledFor: string }) => r.scheduledFor)).toEqual(['2026-06-01T10:15:00.000Z', '2026-06-01T10:00:00.000Z']);
    expect(acme.next).toHaveLength(5);
  });

  it('pauses, resumes and triggers with a valid CSRF token, and refuses without one', async () => {
    const { cookie, token } = await tokenFor('/schedules');
    const refused = await request(app).post('/df/schedules/report/pause').set('Cookie', cookie).type('form').send({});
    expect(refused.status).toBe(403);
    expect((await flow.schedules.get('report'))!.paused).toBe(false);
    const paused = await request(app).post('/df/schedules/report/pause').set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(paused.status).toBe(303);
    expect(paused.headers.location).toBe('/df/schedules');
    expect((await flow.schedules.get('report'))!.paused).toBe(true);
    const page = await request(app).get('/df/schedules');
    expect(page.text).toContain('action="/df/schedules/report/resume"');
    expect(page.text).toContain('<span class="badge waiting">paused</span>');
    const resumed = await request(app).post('/df/schedules/report/resume').set('Cookie', cookie).type('form').send({ _csrf: token });
    expect(resumed.status).toBe(303);
    expect((await flow.schedules.get('report'))!.paused).toBe(false);
    const triggered = await request(app).post('/df/schedules/report/trigger').set('Cookie', cookie).set('Accept', 'application/json').type('form').send({ _csrf: token });
    expect(triggered.status).toBe(200);
    expect((await flow.getRun(triggered.body.runId))!.workflow).toBe('report');
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
