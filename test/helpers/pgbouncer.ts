/**
 * A real PgBouncer of the test's own (Debian's /usr/sbin/pgbouncer) in transaction mode, in front of the
 * shared test server, on a free port: a few server connections shared by many clients, as in production.
 * It refuses to run as root, so as root it runs as the `postgres` system user (like own-postgres.ts).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ADMIN_URL } from './db.js';
import { freeLowPort } from './postgres-bin.js';

export const PGBOUNCER = '/usr/sbin/pgbouncer';

export interface Bouncer {
  port: number;
  /** The URL of `database` through the bouncer. */
  url(database: string): string;
  /** Its pgbouncer.ini. */
  ini: string;
  /** Everything PgBouncer logged so far (its log file). */
  log(): string;
  /** A `SHOW <what>` of PgBouncer's admin console (`POOLS`, `CLIENTS`, `SERVERS`, `STATS`), as rows. */
  show(what: string): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

async function acceptsConnections(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Starts PgBouncer (pool_mode=transaction, `poolSize` server connections per database) and waits until it answers. */
export async function startPgBouncer(options: { poolSize?: number; database: string }): Promise<Bouncer> {
  const upstream = new URL(ADMIN_URL);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'df-pgbouncer-'));
  const logFile = path.join(dir, 'pgbouncer.log');
  const asRoot = process.getuid?.() === 0;
  for (let attempt = 0; ; attempt++) {
    const port = await freeLowPort();
    const ini = [
      '[databases]',
      `* = host=${upstream.hostname} port=${upstream.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      `unix_socket_dir = ${dir}`,
      `logfile = ${logFile}`,
      `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
      'auth_type = trust',
      `admin_users = ${upstream.username || 'postgres'}`,
      `auth_file = ${path.join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      'max_client_conn = 200',
      `default_pool_size = ${options.poolSize ?? 3}`,
      'reserve_pool_size = 0',
      'server_reset_query =',
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), ini);
    fs.writeFileSync(path.join(dir, 'users.txt'), `"${decodeURIComponent(upstream.username || 'postgres')}" ""\n`);
    fs.writeFileSync(logFile, '');
    if (asRoot) fs.chownSync(dir, ...ids('postgres'));
    if (asRoot) fs.chownSync(logFile, ...ids('postgres'));
    const command = [PGBOUNCER, path.join(dir, 'pgbouncer.ini')];
    const child: ChildProcess = asRoot
      ? spawn('runuser', ['-u', 'postgres', '--', ...command], { stdio: ['ignore', 'ignore', 'pipe'] })
      : spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = (database: string) => `postgres://${upstream.username || 'postgres'}@127.0.0.1:${port}/${database}`;
    const deadline = Date.now() + 15_000;
    let up = false;
    while (!up && child.exitCode === null && Date.now() < deadline) {
      up = await acceptsConnections(url(options.database));
      if (!up) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM'); // runuser passes it on to pgbouncer
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
    };
    if (up) {
      return {
        port,
        url,
        ini,
        log: () => fs.readFileSync(logFile, 'utf8'),
        async show(what) {
          const client = new pg.Client({ connectionString: url('pgbouncer') });
          await client.connect();
          try {
            return (await client.query(`SHOW ${what}`)).rows as Record<string, unknown>[];
          } finally {
            await client.end();
          }
        },
        stop: async () => {
          await stop();
          fs.rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    await stop();
    // Another process may have taken the port between the check and PgBouncer's bind: try another one.
    if (attempt >= 3) throw new Error(`PgBouncer did not start: ${stderr || fs.readFileSync(logFile, 'utf8')}`);
  }
}

function ids(user: string): [number, number] {
  const line = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`No system user ${user}: PgBouncer refuses to run as root`);
  const fields = line.split(':');
  return [Number(fields[2]), Number(fields[3])];
}
