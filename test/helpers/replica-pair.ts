/**
 * A throw-away primary and its streaming replica (the machine's PostgreSQL binaries, fresh data
 * directories, free ports of their own): initdb (wal_level replica, the default), pg_basebackup -R
 * from the primary, both started. The shared server on 5432 is never touched.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freeLowPort, ownedByPostgres, postgresBinDir, runPostgresBinary } from './postgres-bin.js';

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

export async function startReplicaPair(): Promise<ReplicaPair> {
  const [primaryPort, replicaPort] = [await freeLowPort(), await freeLowPort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'df-replica-'));
  const primaryData = path.join(dir, 'primary');
  const replicaData = path.join(dir, 'replica');
  const bin = postgresBinDir('pg_basebackup');
  const run = (args: string[]) => runPostgresBinary(bin, args);
  ownedByPostgres(dir);
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
