/**
 * The event-wait model test (events.model.test.ts) without the three kinds of scenario the engine is
 * known to get wrong on this branch: a new event while a wait it matches has timed out unprocessed, an
 * event id reused with other content, and a second event while the suspension that matched the first
 * is not committed yet. It passes today, which shows the harness, the model and the commands agree
 * with the engine everywhere else (starts, redeliveries, drains, travel, cancels, every crash point,
 * takeovers and resumed executions).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { assertProperty, eventWaitProperty } from './commands.js';
import { openSystems } from './system.js';

let systems: Awaited<ReturnType<typeof openSystems>>;

beforeAll(async () => {
  systems = await openSystems('modelb');
});
afterAll(async () => {
  await systems.close();
});

describe('event waits against the reference model, known defects left out', () => {
  it('end as the contract says', async () => {
    const options = { conflicts: false, expiredNotifies: false, eventsAfterUncommittedMatch: false, maxCommands: 30 };
    await assertProperty(eventWaitProperty(systems, options), 200);
  }, 600_000);
});
