import http from 'node:http';
import type { RequestListener } from 'node:http';

/**
 * Node's defaults let one client hold a connection open for a long time: a minute to send its headers
 * (`headersTimeout`, checked only every 30 s), five minutes for the whole request (`requestTimeout`).
 * A slowloris client trickling a header a byte at a time ties up a socket for all of it. The demo
 * closes such clients much sooner; keep-alive stays Node's 5 s (behind a load balancer, set
 * `keepAliveTimeout` above the balancer's idle timeout, and `headersTimeout` above `keepAliveTimeout`).
 */
export const DEMO_SERVER_TIMEOUTS = {
  headersTimeout: 10_000,
  requestTimeout: 30_000,
  keepAliveTimeout: 5_000,
  connectionsCheckingInterval: 1_000,
} satisfies http.ServerOptions;

/** The demo's HTTP server for `app`, with the timeouts above (or the ones given). */
export function createDemoServer(app: RequestListener, timeouts: Partial<typeof DEMO_SERVER_TIMEOUTS> = {}): http.Server {
  return http.createServer({ ...DEMO_SERVER_TIMEOUTS, ...timeouts }, app);
}
