import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { DurableFlow, RouterOptions } from '../../lib/index.js';

export interface ViewerServer {
  url: string;
  base: string;
  server: http.Server;
  close(): Promise<void>;
}

/** The flow's router mounted at /durable_flow in a real HTTP server (with live updates), on a free port. */
export async function startViewer(flow: DurableFlow, options: RouterOptions, live = true): Promise<ViewerServer> {
  const app = express();
  app.use('/durable_flow', flow.router(options));
  const server = http.createServer(app);
  const handle = live ? flow.attachLive(server) : undefined;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    base: `${url}/durable_flow`,
    server,
    async close() {
      await handle?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
