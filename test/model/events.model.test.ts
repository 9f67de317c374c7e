/**
 * Model-based test of event waits (issue #10, "Trust"): random interleavings of starts, notifies
 * (new, redelivered, conflicting ids), drains, clock travel, cancels, and executions stopped dead at
 * an engine debug point (then taken over, or resumed while they hold their lease), checked after
 * every command against the reference model in model.ts. See commands.ts to replay a failure.
 *
 * Below it, the shrunk counterexamples it found, kept as fixed scenarios.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import {
  Crash,
  Drain,
  EVERY_SCENARIO,
  Notify,
  Resume,
  Start,
  Travel,
  assertProperty,
  eventWaitProperty,
  replayScenario,
} from './commands.js';
import { openSystems } from './system.js';

let systems: Awaited<ReturnType<typeof openSystems>>;

beforeAll(async () => {
  systems = await openSystems('model');
});
afterAll(async () => {
  await systems.close();
});

describe('event waits against the reference model', () => {
  it('end as the contract says, whatever the interleaving of events, timeouts, cancels and crashes', async () => {
    await assertProperty(eventWaitProperty(systems, { ...EVERY_SCENARIO, maxCommands: 30 }), 200);
  }, 600_000);
});

describe('event waits: counterexamples found by the model', () => {
  const wait = { k: 0, before: false, second: false, timeout: null };

  it('refuse an event id reused with another payload (EVENT_ID_CONFLICT), storing nothing', async () => {
    await replayScenario(systems, [new Notify('e', 0, 'fresh'), new Notify('e', 0, 'conflict')]);
  });

  it('refuse an event id reused under another name (EVENT_ID_CONFLICT), storing nothing', async () => {
    await replayScenario(systems, [new Notify('e', 0, 'fresh'), new Notify('f', 0, 'conflict')]);
  });

  it('give a wait whose timeout has passed no event, even before a drain processed the timeout', async () => {
    await replayScenario(systems, [
      new Start({ ...wait, timeout: 0.5 }),
      new Drain(),
      new Travel(1),
      new Notify('e', 0),
      new Drain(),
    ]);
  });

  it('give the second wait the event after the one that satisfied the first, both sent before the first wait was stored', async () => {
    // The execution reached `first` and stopped before its suspension committed; two events came; it goes on.
    await replayScenario(systems, [
      new Start({ ...wait, second: true }),
      new Crash(0, 'SUSPEND_BEFORE_COMMIT'),
      new Notify('e', 0),
      new Notify('e', 0),
      new Resume(0),
    ]);
  });

  it('give the second wait the event after the one that satisfied the first, both sent while the run was in a dead execution', async () => {
    // Same, but that execution never comes back: another takes the run over once its lease expires.
    await replayScenario(systems, [
      new Start({ ...wait, second: true }),
      new Crash(0, 'SUSPEND_BEFORE_COMMIT'),
      new Notify('e', 0),
      new Notify('e', 0),
      new Travel(2),
      new Drain(),
    ]);
  });

  it('give the second wait an event sent after the first wait timed out but before the timeout was processed', async () => {
    await replayScenario(systems, [
      new Start({ ...wait, second: true, timeout: 0.5 }),
      new Drain(),
      new Travel(1),
      new Notify('e', 0),
      new Drain(),
    ]);
  });
});
