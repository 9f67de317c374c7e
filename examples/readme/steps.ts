// The README's "Steps", run by test/docs/readme.test.ts (driven with the test harness).
import { DurableFlow, NonRetriableError } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();

// Stand-ins for the app's own services.
const api = { getUser: async (id: number, _options: object) => ({ id, address: 'Main St 1', email: 'ana@example.com' }) };
const psp = { charge: (user: { id: number }) => ({ chargeId: `ch_${user.id}` }) };
const renderer = { render: async (_user: object, _options: { signal: AbortSignal }) => 'rendered' };
const importer = { pages: [] as number[], importPage: async (page: number) => void importer.pages.push(page) };
const stock = { reserve: (item: { sku: string }) => ({ reserved: item.sku }) };
const mailer = { send: (user: { email: string }) => ({ to: user.email }) };
const sms = { send: (_user: object) => ({ sent: true }) };

export const showcase = flow.workflow('step_showcase', async ({ input, step, log }) => {
  // #region readme
  // Runs once; every replay returns the stored result. `attempt` starts at 1.
  const user = await step.run('load_user', ({ attempt, idempotencyKey, signal }) =>
    api.getUser(input.userId, { attempt, idempotencyKey, signal }),
  );

  // Retries: 3 after the first attempt by default (first after ~1 s, doubling, ±20 % jitter).
  await step.run('charge', { retries: 5, backoff: { initial: '2 seconds', factor: 3, max: '10 minutes' } }, () => psp.charge(user));
  await step.run('validate', () => {
    if (!user.address) throw new NonRetriableError('No address'); // fails the step at once
  });

  // A per-attempt timeout: the attempt fails with StepTimeoutError (its `signal` aborts) and is retried.
  await step.run('render', { timeout: '30 seconds' }, ({ signal }) => renderer.render(user, { signal }));

  // Cursor steps resume after a crash from the last cursor passed to `advance`.
  await step.run('import', { start: 0 }, async ({ cursor, advance }) => {
    for (let page = cursor; page < 3; page++) {
      await importer.importPage(page);
      await advance(page + 1);
    }
  });

  // Dynamic names are fine (each must be unique within a run); steps can run in parallel.
  for (const item of input.items) await step.run(`reserve-${item.sku}`, () => stock.reserve(item));
  await Promise.all([step.run('email', () => mailer.send(user)), step.run('sms', () => sms.send(user))]);

  await step.sleep('cool_off', '2 hours'); // durable: the wake time is stored once
  await step.sleepUntil('renewal', input.renewsAt); // a time in the past passes straight through

  const payment = await step.waitForEvent<{ amount: number }>('paid', {
    event: 'payment_succeeded', // default: the step name
    match: { orderId: input.orderId }, // the payload must contain this (Postgres @> containment)
    timeout: '3 days', // then it throws WaitTimeoutError, on every replay too
    allowPastEvents: false, // true: an event recorded before the wait began also matches
  });

  await step.sendEvent('notify_billing', 'order_paid', { orderId: input.orderId, amount: payment.amount }); // once
  log.info('Order paid', { orderId: input.orderId }); // debug | info | warn | error; never twice on replay
  // #endregion readme
  return { user: user.id, paid: payment.amount, pages: importer.pages };
});

export { flow };
