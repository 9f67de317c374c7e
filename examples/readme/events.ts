// The README's "Events", run by test/docs/readme.test.ts.
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const sequelize = flow.sequelize;

// #region readme
const first = await flow.notify('payment_succeeded', { orderId: 42 }, { id: 'evt_123' });
const again = await flow.notify('payment_succeeded', { orderId: 42 }, { id: 'evt_123' }); // again.duplicate === true
// { id, eventId, name, payload, occurredAt, duplicate, matchedWaits }

await sequelize.transaction(async (transaction) => {
  // …your own writes…
  await flow.notify('order_shipped', { orderId: 42 }, { transaction }); // recorded (and wakes runs) only if this commits
});
// #endregion readme

export const observed = { first, again };
await flow.close();
