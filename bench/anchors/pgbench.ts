/**
 * Anchor: pgbench on this machine — what the server itself sustains for single-row INSERT
 * transactions (each its own commit, synchronous_commit as the server is configured) with 1, 4
 * and 8 clients, 10 s each, in a fresh database with one table and a custom script.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { AnchorResult, FigureKey } from './common.js';
import { createDb, round } from './common.js';

const execFileAsync = promisify(execFile);

const PGBENCH = process.env.PGBENCH ?? 'pgbench';
const CLIENTS: readonly { clients: number; figure: FigureKey }[] = [
  { clients: 1, figure: 'pgbench_insert_tps_1' },
  { clients: 4, figure: 'pgbench_insert_tps_4' },
  { clients: 8, figure: 'pgbench_insert_tps_8' },
];
const SECONDS = 10;
/** pgbench worker threads: at most the machine's 2 cores. */
const maxThreads = 2;

const SCRIPT = `\\set v random(1, 1000000)
INSERT INTO anchor_insert (v) VALUES (:v);
`;

export interface PgbenchOptions {
  /** Seconds per run (default 10). */
  seconds?: number;
  /** Accepted so that a shared options object can be passed; pgbench ignores them. */
  n?: number;
  seq?: number;
  events?: number;
}

async function pgbenchVersion(): Promise<string> {
  const { stdout } = await execFileAsync(PGBENCH, ['--version']);
  return /(\d+(?:\.\d+)+)/.exec(stdout)?.[1] ?? stdout.trim();
}

/** Parses `tps = 1234.5 (without initial connection time)` from pgbench's report. */
export function parseTps(output: string): number {
  const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(output);
  if (!match?.[1]) throw new Error(`pgbench: no tps line in output:\n${output}`);
  return Number(match[1]);
}

export async function runPgbench(options: PgbenchOptions = {}): Promise<AnchorResult[]> {
  const seconds = options.seconds ?? SECONDS;
  const version = await pgbenchVersion();
  const results: AnchorResult[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'anchor-pgbench-'));
  const db = await createDb('anchor_pgbench');
  try {
    const scriptFile = join(dir, 'insert.sql');
    await writeFile(scriptFile, SCRIPT);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(
        'CREATE TABLE anchor_insert (id bigserial PRIMARY KEY, v integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())',
      );
    } finally {
      await client.end();
    }
    for (const { clients, figure } of CLIENTS) {
      const threads = Math.min(clients, maxThreads);
      const args = ['-n', '-f', scriptFile, '-c', String(clients), '-j', String(threads), '-T', String(seconds), db.url];
      const { stdout, stderr } = await execFileAsync(PGBENCH, args, {
        timeout: (seconds + 60) * 1000,
        maxBuffer: 10 * 1024 * 1024,
      });
      const tps = parseTps(`${stdout}\n${stderr}`);
      const failed = /number of failed transactions: (\d+)/.exec(stdout)?.[1];
      results.push({
        system: 'pgbench',
        version,
        figure,
        value: round(tps, 1),
        unit: 'tps',
        notes: `pgbench -n -f insert.sql -c ${clients} -j ${threads} -T ${seconds}; script: one INSERT of a random integer into a bigserial-keyed table per transaction${failed && failed !== '0' ? `; ${failed} failed transactions` : ''}`,
      });
    }
  } finally {
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  }
  return results;
}
