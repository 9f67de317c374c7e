/**
 * A Postgres server of the test's own (the machine's PostgreSQL binaries, a fresh data directory,
 * its own port), for faults that would disturb every other test on the shared server: stopping it
 * with `-m immediate` (a crash) and starting it again.
 */
import { execFileSync, execSync } from 'node:child_process';
import fs from 'node:fs';
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

export function startOwnPostgres(port: number): OwnPostgres {
  const bin = binDir();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'df-own-pg-'));
  const data = path.join(dir, 'data');
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
  const start = () => run(['pg_ctl', '-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', 'start']);
  start();
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
