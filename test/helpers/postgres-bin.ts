/**
 * What the tests that run servers of their own share (a Postgres cluster, a primary and its replica,
 * PgBouncer): a free port, the machine's PostgreSQL binaries, and running a command as the `postgres`
 * system user when the tests run as root (initdb, pg_ctl and pgbouncer refuse root).
 */
import { execFileSync, execSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * A port nothing listens on, below Linux's ephemeral range (32768–60999): a port in that range may be
 * held by any outgoing connection of the machine at the moment the server binds (a CI run failed so,
 * on 59240). Checked by binding it, then released for the server to take.
 */
export async function freeLowPort(): Promise<number> {
  for (let tries = 0; tries < 200; tries += 1) {
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

/** The newest PostgreSQL binaries of the machine that include `needs` (Debian's /usr/lib/postgresql/<version>/bin). */
export function postgresBinDir(needs = 'pg_ctl'): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const found = versions.map((v) => path.join(root, v, 'bin')).find((dir) => fs.existsSync(path.join(dir, needs)));
  if (!found) throw new Error(`No PostgreSQL binaries with ${needs} under /usr/lib/postgresql/<version>/bin: install postgresql (the test runs servers of its own)`);
  return found;
}

/** Whether this process runs as root (then servers run as the `postgres` user). */
export const AS_ROOT = process.getuid?.() === 0;

/** Hands `dir` to the `postgres` user when running as root (a data directory's parent, a socket directory). */
export function ownedByPostgres(dir: string): void {
  if (AS_ROOT) execSync(`chown postgres ${JSON.stringify(dir)}`);
}

/** Runs one of the binaries of `bin` to its end, as `postgres` when this process is root; throws on failure. */
export function runPostgresBinary(bin: string, args: string[]): void {
  const command = [path.join(bin, args[0]!), ...args.slice(1)];
  if (AS_ROOT) execFileSync('runuser', ['-u', 'postgres', '--', ...command], { stdio: 'pipe' });
  else execFileSync(command[0]!, command.slice(1), { stdio: 'pipe' });
}
