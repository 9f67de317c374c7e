/**
 * `npm start` twice (issue #10, defect 14): a second demo whose embedded Postgres finds its port taken,
 * or its data directory in use by the first, exits non-zero with one clear paragraph naming the port or
 * the directory and the variable that changes it — never an uncaught exception — and the first demo
 * serves on, unharmed. Real processes, a real embedded Postgres in a temporary directory.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

const root = path.resolve(import.meta.dirname, '../..');
const UNCAUGHT = /triggerUncaughtException|Uncaught|\n\s+at |node:internal|undefined\s*$/;

interface Demo {
  output: () => string;
  exited: Promise<number | null>;
  kill: (signal: NodeJS.Signals) => void;
}

function startDemo(env: Record<string, string>): Demo {
  const { DATABASE_URL: _ignored, ...inherited } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', 'example-app/server.ts'], {
    cwd: root,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  running.add(child.pid!);
  void exited.then(() => running.delete(child.pid!));
  return { output: () => output, exited, kill: (signal) => child.kill(signal) };
}

/** Pids of demos still running, killed after the tests whatever happened. */
const running = new Set<number>();

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until(check: () => boolean, what: () => string, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A demo that must refuse to start: its exit code and what it printed. */
async function refused(env: Record<string, string>): Promise<{ code: number | null; text: string }> {
  const demo = startDemo(env);
  const code = await Promise.race([demo.exited, new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), 120_000))]);
  if (code === 'running') {
    demo.kill('SIGKILL');
    throw new Error(`The demo kept running:\n${demo.output()}`);
  }
  return { code, text: demo.output().trim() };
}

function expectOneParagraph(text: string, what: string): void {
  expect(text, what).not.toMatch(UNCAUGHT);
  expect(text.split(/\n\s*\n/), what).toHaveLength(1);
  expect(text.length, what).toBeLessThan(800);
}

let tmp: string;
let first: Demo;
let firstUrl: string;
let pgPort: number;
let dataDir: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'df-demo-start-'));
  // The embedded Postgres runs as the `postgres` user when the tests run as root: it must reach the directory.
  fs.chmodSync(tmp, 0o777);
  dataDir = path.join(tmp, 'pg');
  pgPort = await freePort();
  const port = await freePort();
  firstUrl = `http://127.0.0.1:${port}`;
  first = startDemo({ PORT: String(port), EMBEDDED_POSTGRES_DIR: dataDir, EMBEDDED_POSTGRES_PORT: String(pgPort) });
  await until(() => first.output().includes('durable-flow demo on'), () => first.output());
}, 200_000);

afterAll(async () => {
  first?.kill('SIGTERM');
  await Promise.race([first?.exited, new Promise((resolve) => setTimeout(resolve, 20_000))]);
  for (const pid of running) process.kill(pid, 'SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('a second npm start', () => {
  it('with the same data directory (and port) says the directory is in use by the other one, names EMBEDDED_POSTGRES_DIR, exits 1', async () => {
    for (const port of [pgPort, await freePort()]) {
      const { code, text } = await refused({ PORT: String(await freePort()), EMBEDDED_POSTGRES_DIR: dataDir, EMBEDDED_POSTGRES_PORT: String(port) });
      expect(code, text).toBe(1);
      expect(text).toContain(dataDir);
      expect(text).toMatch(/in use by another Postgres \(pid \d+, port \d+\)/);
      expect(text).toContain(`port ${pgPort}`);
      expect(text).toMatch(/EMBEDDED_POSTGRES_DIR/);
      expectOneParagraph(text, `port ${port}`);
    }
  });

  it('with its own data directory but the same port says the port is taken, names EMBEDDED_POSTGRES_PORT, exits 1', async () => {
    const own = path.join(tmp, 'pg-second');
    const { code, text } = await refused({ PORT: String(await freePort()), EMBEDDED_POSTGRES_DIR: own, EMBEDDED_POSTGRES_PORT: String(pgPort) });
    expect(code, text).toBe(1);
    expect(text).toMatch(new RegExp(`port ${pgPort}.*in use`));
    expect(text).toMatch(/EMBEDDED_POSTGRES_PORT/);
    expectOneParagraph(text, 'same port');
    // Refused before initialising anything.
    expect(fs.existsSync(path.join(own, 'PG_VERSION'))).toBe(false);
  });

  it('with a bad EMBEDDED_POSTGRES_PORT, or the web PORT taken, says which and exits 1', async () => {
    const bad = await refused({ PORT: String(await freePort()), EMBEDDED_POSTGRES_DIR: dataDir, EMBEDDED_POSTGRES_PORT: '54329x' });
    expect(bad.code, bad.text).toBe(1);
    expect(bad.text).toMatch(/EMBEDDED_POSTGRES_PORT.*1 to 65535.*"54329x"/);
    expectOneParagraph(bad.text, 'bad port');

    let db: TestDatabase | undefined;
    try {
      db = await createDatabase('demostart');
      const webPort = new URL(firstUrl).port;
      const taken = await refused({ PORT: webPort, DATABASE_URL: db.url });
      expect(taken.code, taken.text).toBe(1);
      expect(taken.text).toMatch(new RegExp(`127\\.0\\.0\\.1:${webPort} is in use.*PORT`));
      expectOneParagraph(taken.text, 'web port');
    } finally {
      await db?.drop();
    }
  });

  it('leaves the first demo serving', async () => {
    const res = await fetch(`${firstUrl}/durable_flow/`);
    expect(res.status).toBe(200);
    expect(first.output()).not.toMatch(UNCAUGHT);
  });
});
