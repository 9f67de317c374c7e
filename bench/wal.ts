/**
 * WAL records per three-step workflow, broken down by record kind and relation (issue 17, point 7).
 *
 *   npx tsx bench/wal.ts [--runs=200]
 *
 * pg_stat_wal is server-wide, so this runs on a Postgres cluster of its own (initdb of the machine's
 * binaries on a free port, removed at the end; test/chaos/own-postgres.ts), runs the workflows one at a
 * time with one worker, and reads the WAL they wrote with pg_waldump: which heap and index writes each
 * workflow costs (a row lock, a speculative insert's confirmation and every index entry of a new row
 * version are records of their own). Not part of `npm run bench`; no figure here is asserted.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import pg from 'pg';
import { DurableFlow } from '../lib/index.js';
import { startOwnPostgres } from '../test/chaos/own-postgres.js';
import { defineBenchWorkflows } from './workflows.js';

const runs = Number(process.argv.find((a) => a.startsWith('--runs='))?.slice(7) ?? 200);
const server = await startOwnPostgres();
try {
  const admin = new pg.Client({ connectionString: server.url() });
  await admin.connect();
  await admin.query('CREATE DATABASE wal');
  const flow = new DurableFlow({ databaseUrl: server.url('wal'), logger: false });
  await flow.migrate();
  const { three } = defineBenchWorkflows(flow);
  const worker = flow.worker({ concurrency: 1, pollInterval: 1000 });
  await worker.start();
  for (let i = 0; i < 20; i++) await (await three.start({ n: i })).result(); // warm-up
  const stats = async () => (await admin.query(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)).rows[0];
  // The records are counted in the dump: pg_stat_wal lags behind the backends that wrote them.
  const before = await stats();
  for (let i = 0; i < runs; i++) await (await three.start({ n: i })).result();
  const after = await stats();
  await worker.stop();
  await flow.close();

  const db = new pg.Client({ connectionString: server.url('wal') });
  await db.connect();
  const names = new Map<string, string>();
  for (const r of (await db.query(`SELECT pg_relation_filenode(oid)::text AS node, relname FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL`)).rows) names.set(r.node, r.relname);
  await db.end();
  const dataDir = (await admin.query('SHOW data_directory')).rows[0].data_directory as string;
  await admin.end();
  const dump = execFileSync('/usr/lib/postgresql/15/bin/pg_waldump', ['-p', path.join(dataDir, 'pg_wal'), '-s', before.lsn, '-e', after.lsn], { maxBuffer: 1 << 30 }).toString();
  const counts = new Map<string, number>();
  let records = 0;
  let bytes = 0;
  for (const line of dump.split('\n')) {
    const manager = /rmgr: (\w+)/.exec(line)?.[1];
    if (!manager) continue;
    records += 1;
    bytes += Number(/len \(rec\/tot\):\s*\d+\/\s*(\d+)/.exec(line)?.[1] ?? 0);
    const kind = /desc: (\w+)/.exec(line)?.[1] ?? '';
    const node = /rel \d+\/\d+\/(\d+)/.exec(line)?.[1];
    const key = `${manager} ${kind}${node ? ` ${names.get(node) ?? node}` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  console.log(`${runs} three-step workflows, one at a time: ${(records / runs).toFixed(2)} WAL records and ${(bytes / runs).toFixed(0)} bytes per workflow`);
  console.log('\nper workflow | record');
  for (const [key, n] of [...counts].sort((a, b) => b[1] - a[1])) if (n / runs >= 0.05) console.log(`${(n / runs).toFixed(2).padStart(12)} | ${key}`);
} finally {
  server.destroy();
}
