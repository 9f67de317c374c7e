/**
 * A Postgres server of the test's own (the machine's PostgreSQL binaries, a fresh data directory,
 * its own port), for faults that would disturb every other test on the shared server: stopping it
 * with `-m immediate` (a crash) and starting it again.
 */
import { execFileSync, execSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const dir = path.join(root, version, 'bin');
    if (fs.existsSync(path.join(dir, 'pg_ctl'))) return dir;
  }
  throw new Error('No PostgreSQL binaries under /usr/lib/postgresql/<version>/bin: install postgresql (the restart test runs its own server)');
}

export interface OwnPostgres {
  port: number;
  url(database?: string): string;
  /** Crashes the server (`pg_ctl stop -m immediate`). */
  crash(): void;
  start(): void;
  /** Stops the server and removes its data directory. */
  destroy(): void;
}

/**
 * A port nothing listens on, below Linux's ephemeral range (32768–60999): a port in that range may be
 * held by any outgoing connection of the machine at the moment the server binds (a CI run failed so,
 * on 59240). Checked by binding it, then released for the server to take.
 */
export async function freeLowPort(): Promise<number> {
  for (let tries = 0; tries < 50; tries += 1) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('No free port found between 20000 and 32000 on 127.0.0.1');
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
  const bin = binDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'df-own-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'log');
  const asRoot = process.getuid?.() === 0;
  // initdb refuses to run as root: run the server as the `postgres` system user then.
  const run = (args: string[]) => {
    const command = [path.join(bin, args[0]!), ...args.slice(1)];
    if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', ...command], { stdio: 'pipe' });
    else execFileSync(command[0]!, command.slice(1), { stdio: 'pipe' });
  };
  if (asRoot) execSync(`chown postgres ${JSON.stringify(dir)}`);
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
