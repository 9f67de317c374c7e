// The README's "Metrics", run by test/docs/readme.test.ts.
import express from 'express';
import { Registry } from 'prom-client';
import { DurableFlow } from 'durable-flow';

const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });
await flow.migrate();
const app = express();

// #region readme
// Scraped at GET /durable_flow/metrics, behind the viewer's access check (here basic auth).
app.use('/durable_flow', flow.router({ basicAuth: { username: 'prometheus', password: process.env.METRICS_PASSWORD ?? 'change-me' } }));

// Or in your own registry, beside your app's metrics (the flow's registry is its own, never the global one):
const mine = new Registry();
const merged = Registry.merge([mine, flow.metrics.registry]);
const text = await flow.metrics.text(); // reads the counts from the database, then renders every metric
// #endregion readme

export const names = merged.getMetricsAsArray().map((m) => m.name);
export { text };
await flow.close();
