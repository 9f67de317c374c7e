import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Router } from 'express';
import type { DurableFlow, RouterOptions } from '../../lib/index.js';

export interface ViewerServer {
  url: string;
  base: string;
  server: http.Server;
  /** The mounted router (its `stack` lists every route). */
  router: Router;
  close(): Promise<void>;
}

/** The flow's router mounted at /durable_flow in a real HTTP server (with live updates), on a free port. */
export async function startViewer(flow: DurableFlow, options: RouterOptions, live = true): Promise<ViewerServer> {
  const app = express();
  const router = flow.router(options);
  app.use('/durable_flow', router);
  const server = http.createServer(app);
  const handle = live ? flow.attachLive(server) : undefined;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    base: `${url}/durable_flow`,
    server,
    router,
    async close() {
      await handle?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON, or `{}` when it is not JSON. */
  json: Record<string, any>;
  /** How many body bytes were written before the answer came. */
  sent: number;
}

/**
 * POSTs exactly `body` with exactly `headers` (no client adds or normalises anything). Given a number
 * instead of bytes, it streams that many filler bytes in 64 KiB chunks and stops as soon as the server
 * answers, so `sent` shows how much the server took before refusing. An upload cut short after the
 * answer is not an error.
 */
export function rawPost(url: string, body: Buffer | number, headers: Record<string, string | number>): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let answered = false;
    let sent = 0;
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        if (!req.writableFinished) req.destroy();
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Record<string, any> = {};
        try {
          json = JSON.parse(text) as Record<string, any>;
        } catch {
          // not JSON: assertions on `json` fail
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json, sent });
      });
    });
    req.on('error', (error) => {
      if (!answered) reject(error);
    });
    if (Buffer.isBuffer(body)) {
      sent = body.length;
      req.end(body);
      return;
    }
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = () => {
      while (!answered && sent < body) {
        sent += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      if (!answered) req.end();
    };
    pump();
  });
}
