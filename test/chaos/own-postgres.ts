/**
 * A Postgres server of the test's own (the machine's PostgreSQL binaries, a fresh data directory,
 * its own port), for faults that would disturb every other test on the shared server: stopping it
 * with `-m immediate` (a crash) and starting it again.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freeLowPort, ownedByPostgres, postgresBinDir, runPostgresBinary } from '../helpers/postgres-bin.js';

export interface OwnPostgres {
  port: number;
  url(database?: string): string;
  /** Crashes the server (`pg_ctl stop -m immediate`). */
  crash(): void;
  start(): void;
  /** Stops the server and removes its data directory. */
  destroy(): void;
}

function logTail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '(no log written)';
  }
}

/** Makes a fresh cluster and starts it on a free port, trying another port if the first is taken. */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const port = await freeLowPort();
    try {
      return createOwnPostgres(port);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

function createOwnPostgres(port: number): OwnPostgres {
  const bin = postgresBinDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'df-own-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'log');
  const run = (args: string[]) => runPostgresBinary(bin, args);
  ownedByPostgres(dir);
  run(['initdb', '-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = () => {
    try {
      run(['pg_ctl', '-D', data, '-o', options, '-l', log, '-w', '-t', '120', 'start']);
    } catch (error) {
      throw new Error(`The test's own Postgres did not start on port ${port}; the end of its log:\n${logTail(log)}`, { cause: error });
    }
  };
  try {
    start();
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    port,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    crash: () => run(['pg_ctl', '-D', data, '-m', 'immediate', 'stop']),
    start,
    destroy() {
      try {
        run(['pg_ctl', '-D', data, '-m', 'immediate', 'stop']);
      } catch {
        // already stopped
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
