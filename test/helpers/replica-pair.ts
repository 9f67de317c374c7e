/**
 * A throw-away primary and its streaming replica (the machine's PostgreSQL binaries, fresh data
 * directories, free ports of their own): initdb (wal_level replica, the default), pg_basebackup -R
 * from the primary, both started. The shared server on 5432 is never touched.
 */
import { execFileSync, execSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** The newest PostgreSQL binaries of the machine (/usr/lib/postgresql/<version>/bin, Debian's layout). */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  const found = versions.map((v) => path.join(root, v, 'bin')).find((dir) => fs.existsSync(path.join(dir, 'pg_basebackup')));
  if (!found) throw new Error('No PostgreSQL binaries with pg_basebackup under /usr/lib/postgresql/<version>/bin: install postgresql (the replica test runs its own pair)');
  return found;
}

export interface ReplicaPair {
  primaryUrl(database?: string): string;
  replicaUrl(database?: string): string;
  /** One statement on the replica (its `postgres` database unless told). */
  onReplica<T extends pg.QueryResultRow>(sql: string, database?: string): Promise<T[]>;
  stopReplica(): void;
  startReplica(): void;
  /** Stops both servers and removes their data directories. */
  destroy(): void;
}

/** A port below 32768 that nothing listens on now (a bind check on 127.0.0.1). */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const free = await new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('No free port found between 20000 and 32000');
}

export async function startReplicaPair(): Promise<ReplicaPair> {
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'df-replica-'));
  const primaryData = path.join(dir, 'primary');
  const replicaData = path.join(dir, 'replica');
  const bin = binDir();
  const asRoot = process.getuid?.() === 0;
  // initdb refuses to run as root: run the servers as the `postgres` system user then.
  const run = (args: string[]) => {
    const command = [path.join(bin, args[0]!), ...args.slice(1)];
    if (asRoot) execFileSync('runuser', ['-u', 'postgres', '--', ...command], { stdio: 'pipe' });
    else execFileSync(command[0]!, command.slice(1), { stdio: 'pipe' });
  };
  if (asRoot) execSync(`chown postgres ${JSON.stringify(dir)}`);
  const options = (port: number) => `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60 -c wal_level=replica`;
  const start = (data: string, port: number, log: string) => run(['pg_ctl', '-D', data, '-o', options(port), '-l', path.join(dir, log), '-w', 'start']);
  const stop = (data: string) => {
    try {
      run(['pg_ctl', '-D', data, '-m', 'fast', '-w', 'stop']);
    } catch {
      // already stopped
    }
  };
  run(['initdb', '-D', primaryData, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  start(primaryData, primaryPort, 'primary.log');
  try {
    // -R writes standby.signal and primary_conninfo: the copy starts as a streaming replica.
    run(['pg_basebackup', '-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replicaData, '-R', '-X', 'stream', '--no-sync']);
    start(replicaData, replicaPort, 'replica.log');
  } catch (error) {
    stop(primaryData);
    fs.rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const url = (port: number, database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    primaryUrl: (database = 'postgres') => url(primaryPort, database),
    replicaUrl: (database = 'postgres') => url(replicaPort, database),
    async onReplica<T extends pg.QueryResultRow>(sql: string, database = 'postgres') {
      const client = new pg.Client({ connectionString: url(replicaPort, database) });
      await client.connect();
      try {
        return (await client.query<T>(sql)).rows;
      } finally {
        await client.end();
      }
    },
    stopReplica: () => stop(replicaData),
    startReplica: () => start(replicaData, replicaPort, 'replica.log'),
    destroy() {
      stop(replicaData);
      stop(primaryData);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
