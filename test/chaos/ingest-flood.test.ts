/**
 * Issue #10, defect 7: an ingest flood of many distinct event names must not exhaust Postgres's lock
 * table. Two app "processes" (two flows, each with its own pool of 10 connections) take 20 concurrent
 * signed requests of 1,000 distinct names each: every request is answered 202 and every event stored,
 * while runs waiting for some of those names are woken. Before, each name took its own advisory lock
 * (20 × 1,000 locks against a table sized for 64 per connection): `out of shared memory`, and 500s.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signatureHeader } from '../../lib/index.js';
import type { DurableFlow, WorkflowContext } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { setupDatabase } from '../helpers/flow.js';
import type { TestContext } from '../helpers/flow.js';

const SECRET = 'whsec_flood_0123456789abcdef';
const REQUESTS = 20;
const NAMES = 1000;

let ctx: TestContext;
const servers: http.Server[] = [];
const bases: string[] = [];
let flows: DurableFlow[];

beforeAll(async () => {
  ctx = await setupDatabase('flood');
  flows = [ctx.flow({ poolSize: 10 }), ctx.flow({ poolSize: 10 })];
  for (const flow of flows) {
    const app = express();
    app.use('/df', flow.router({ allowUnauthenticated: true, eventSecret: SECRET, ingestLimit: 4 * 1024 * 1024 }));
    const server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    bases.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}/df`);
  }
});
afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  await ctx.cleanup();
});

describe('ingest floods', () => {
  it('7: 20 concurrent requests of 1,000 distinct event names on two app processes are all stored, never a 500', async () => {
    const flow = flows[0]!;
    const harness = createTestHarness(flow);
    const wf = flow.workflow('flood-waiter', async ({ step, input }: WorkflowContext<{ name: string }>) =>
      step.waitForEvent('flood', { event: input.name }),
    );
    const waiting = await Promise.all([0, 7, 19].map((r) => wf.start({ name: `flood-${r}-${r * 31}` })));
    await harness.drain();

    const answers = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, r) => {
        const body = JSON.stringify(Array.from({ length: NAMES }, (_, n) => ({ name: `flood-${r}-${n}`, payload: { r, n } })));
        const response = await fetch(`${bases[r % 2]}/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'DurableFlow-Signature': signatureHeader(SECRET, body) },
          body,
        });
        return { status: response.status, text: await response.text() };
      }),
    );
    for (const answer of answers) expect(answer, answer.text.slice(0, 300)).toMatchObject({ status: 202 });
    const { rows } = await flow.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${flow.tables.events} WHERE name LIKE 'flood-%'`);
    expect(rows[0]!.n).toBe(REQUESTS * NAMES);
    await harness.drain();
    for (const run of waiting) await harness.assertCompleted(run);
  });
});
