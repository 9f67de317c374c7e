/**
 * `npm run bench`: durable-flow side by side with DBOS Transact, graphile-worker, pg-boss and
 * pgbench, on the same Postgres, in the same run. Each system runs in its own child process
 * (bench/one.ts) against fresh databases; this prints one table, writes the raw results to
 * bench/results/ (git-ignored) and, with --write, the table into docs/performance.md.
 *
 *   npm run bench                      full run (about 10 minutes on 2 cores)
 *   npm run bench -- --quick           small numbers, for checking the harness itself
 *   npm run bench -- --only=durable-flow,dbos
 *   npm run bench -- --write           also update docs/performance.md (then `npm run readme`)
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { ADMIN_URL } from './anchors/common.js';
import { FULL, QUICK } from './options.js';
import type { BenchOptions } from './options.js';

interface Result {
  system: string;
  version: string;
  figure: string;
  value: number;
  unit: string;
  notes?: string;
}

const SYSTEMS = ['durable-flow', 'dbos', 'graphile-worker', 'pg-boss', 'pgbench'] as const;
const ANCHOR_COLUMNS = ['DBOS Transact', 'graphile-worker', 'pg-boss'] as const;
const root = path.join(import.meta.dirname, '..');

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const write = args.includes('--write');
const onlyArg = args.find((a) => a.startsWith('--only='));
const only = onlyArg ? onlyArg.slice('--only='.length).split(',') : [...SYSTEMS];
for (const name of only) {
  if (!(SYSTEMS as readonly string[]).includes(name)) throw new Error(`--only: unknown system ${JSON.stringify(name)}; choose from ${SYSTEMS.join(', ')}`);
}
if (write && (quick || onlyArg)) throw new Error('--write records a full run of every system; drop --quick and --only');
const options: BenchOptions = quick ? QUICK : FULL;

function runSystem(system: string): Promise<Result[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'one.ts'), system, JSON.stringify(options)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULTS '));
      if (code !== 0 || !line) return reject(new Error(`${system} exited with ${code}${out ? `; stdout: ${out.slice(-500)}` : ''}`));
      resolve(JSON.parse(line.slice('RESULTS '.length)) as Result[]);
    });
  });
}

async function machine(): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    const setting = async (name: string) => (await client.query<{ s: string }>(`SELECT current_setting($1) AS s`, [name])).rows[0]!.s;
    const cpus = os.cpus();
    return {
      cpu: `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown'}`,
      memory: `${Math.round(os.totalmem() / 2 ** 30)} GB`,
      os: `${os.type()} ${os.release()}`,
      node: process.version,
      postgres: (await setting('server_version')).split(' ')[0]!,
      postgresSettings: `synchronous_commit=${await setting('synchronous_commit')}, fsync=${await setting('fsync')}, wal_sync_method=${await setting('wal_sync_method')}, shared_buffers=${await setting('shared_buffers')}, max_connections=${await setting('max_connections')}`,
    };
  } finally {
    await client.end();
  }
}

// ---- The table ----

interface Row {
  label: string;
  figure: string;
  /** Which way is better: ratios are printed as "times better than the anchor". */
  better: 'higher' | 'lower';
  anchors: boolean;
}

const count = (n: number) => n.toLocaleString('en-US');

const ROWS: Row[] = [
  { label: `3-step workflows/s, ${count(options.n)} started at once, 1 worker process`, figure: 'throughput_1', better: 'higher', anchors: true },
  ...options.processes.filter((p) => p > 1).map((p): Row => ({ label: `… with ${p} worker processes`, figure: `throughput_${p}`, better: 'higher', anchors: false })),
  { label: 'start → result, one at a time, median (ms)', figure: 'latency_median', better: 'lower', anchors: true },
  { label: 'start → result, one at a time, p99 (ms)', figure: 'latency_p99', better: 'lower', anchors: true },
  { label: 'event → resume, median (ms)', figure: 'event_resume_median', better: 'lower', anchors: true },
  { label: 'event → resume, p99 (ms)', figure: 'event_resume_p99', better: 'lower', anchors: true },
  { label: 'Postgres commits per workflow', figure: 'commits_per_wf', better: 'lower', anchors: true },
  { label: 'WAL flushes per workflow', figure: 'wal_flushes_per_wf', better: 'lower', anchors: true },
  { label: 'WAL records per workflow', figure: 'wal_records_per_wf', better: 'lower', anchors: true },
  { label: 'SQL statements sent per workflow', figure: 'statements_per_wf', better: 'lower', anchors: false },
  ...options.backlogs.map(
    (idle): Row => ({
      label: idle === 0 ? 'start → result median, empty tables (ms)' : `… with ${count(idle)} sleeping + ${count(idle)} waiting runs (ms)`,
      figure: `latency_backlog_${idle}`,
      better: 'lower',
      anchors: false,
    }),
  ),
];

function fmt(value: number | undefined): string {
  if (value === undefined || Number.isNaN(value)) return '–';
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function find(results: Result[], system: string, figure: string): Result | undefined {
  return results.find((r) => r.system === system && r.figure === figure);
}

function ratio(row: Row, ours: number | undefined, anchor: number | undefined): string {
  if (ours === undefined || anchor === undefined || ours <= 0 || anchor <= 0) return '';
  const times = row.better === 'higher' ? ours / anchor : anchor / ours;
  return ` (${times >= 10 ? Math.round(times) : times.toFixed(1)}×)`;
}

function table(results: Result[]): string {
  const lines = [
    `| figure | durable-flow | ${ANCHOR_COLUMNS.join(' | ')} |`,
    `|---|---:|${ANCHOR_COLUMNS.map(() => '---:').join('|')}|`,
  ];
  for (const row of ROWS) {
    const ours = find(results, 'durable-flow', row.figure)?.value;
    if (ours === undefined && !row.anchors) continue;
    const cells = ANCHOR_COLUMNS.map((system) => {
      if (!row.anchors) return '';
      const anchor = find(results, system, row.figure)?.value;
      return anchor === undefined ? '–' : `${fmt(anchor)}${ratio(row, ours, anchor)}`;
    });
    lines.push(`| ${row.label} | **${fmt(ours)}** | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function pgbenchLine(results: Result[]): string {
  const tps = [1, 4, 8].map((c) => find(results, 'pgbench', `pgbench_insert_tps_${c}`)?.value);
  if (tps.every((v) => v === undefined)) return '';
  const ours = find(results, 'durable-flow', 'throughput_1')?.value;
  const commits = find(results, 'durable-flow', 'commits_per_wf')?.value;
  const best = Math.max(...tps.filter((v): v is number => v !== undefined));
  let line = `Postgres itself (pgbench, one single-row INSERT per transaction): ${tps.map((v, i) => `${fmt(v)} tps with ${[1, 4, 8][i]} client${i ? 's' : ''}`).join(', ')}.`;
  if (ours !== undefined && commits !== undefined) {
    line += ` At ${fmt(ours)} workflows/s × ${fmt(commits)} commits each, durable-flow commits ${fmt(ours * commits)} transactions/s: ${Math.round((100 * ours * commits) / best)}% of the best pgbench figure.`;
  }
  return line;
}

function targets(results: Result[]): string[] {
  const v = (system: string, figure: string) => find(results, system, figure)?.value;
  const lines: string[] = [];
  const check = (ok: boolean | undefined, text: string) => lines.push(`- ${ok === undefined ? '(not measured)' : ok ? 'met' : '**missed**'}: ${text}`);
  const tp = v('durable-flow', 'throughput_1');
  const dbosTp = v('DBOS Transact', 'throughput_1');
  check(tp !== undefined && dbosTp !== undefined ? tp >= 2 * dbosTp : undefined, `throughput ≥ 2× DBOS Transact's (${fmt(tp)} vs ${fmt(dbosTp)} wf/s)`);
  const ev = v('durable-flow', 'event_resume_median');
  const dbosEv = v('DBOS Transact', 'event_resume_median');
  check(ev !== undefined && dbosEv !== undefined ? ev <= dbosEv : undefined, `event → resume no slower than DBOS send/recv (median ${fmt(ev)} vs ${fmt(dbosEv)} ms)`);
  const wal = v('durable-flow', 'wal_flushes_per_wf');
  check(wal !== undefined ? wal <= 5 : undefined, `at most 5 WAL flushes per 3-step workflow (${fmt(wal)})`);
  const b0 = v('durable-flow', 'latency_backlog_0');
  const b100 = v('durable-flow', `latency_backlog_${Math.max(...options.backlogs)}`);
  check(
    b0 !== undefined && b100 !== undefined ? b100 <= b0 * 1.25 + 0.5 : undefined,
    `start → result latency flat with a large idle backlog (median ${fmt(b0)} ms empty, ${fmt(b100)} ms with the backlog; flat = within 25% + 0.5 ms)`,
  );
  return lines;
}

// ---- Main ----

const started = new Date();
const info = await machine();
process.stderr.write(`durable-flow benchmark${quick ? ' (quick: figures not comparable)' : ''}: ${info.cpu}, ${info.memory}, Node ${info.node}, Postgres ${info.postgres}\n`);
const results: Result[] = [];
const failures: string[] = [];
for (const system of only) {
  process.stderr.write(`${system}…\n`);
  const t = Date.now();
  try {
    results.push(...(await runSystem(system)));
    process.stderr.write(`${system}: done in ${Math.round((Date.now() - t) / 1000)} s\n`);
  } catch (error) {
    failures.push(`${system}: ${(error as Error).message}`);
    process.stderr.write(`${system}: FAILED: ${(error as Error).message}\n`);
  }
}

const versions = [...new Map(results.map((r) => [r.system.replace(/ \(.*\)$/, ''), r.version])).entries()].map(([s, ver]) => `${s} ${ver}`).join(', ');
const report = [
  table(results),
  '',
  pgbenchLine(results),
  '',
  `Machine: ${info.cpu}, ${info.memory} RAM, ${info.os}; Node ${info.node}; Postgres ${info.postgres} on the same host (${info.postgresSettings}). Versions: ${versions}. Run ${started.toISOString().slice(0, 10)}${quick ? ' (quick)' : ''}.`,
  '',
  'Targets:',
  ...targets(results),
  ...(failures.length ? ['', 'Failed:', ...failures.map((f) => `- ${f}`)] : []),
].join('\n');

process.stdout.write(`\n${report}\n`);
const dir = path.join(root, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const stamp = started.toISOString().replace(/[:.]/g, '-');
writeFileSync(path.join(dir, `${stamp}.json`), JSON.stringify({ started, options, machine: info, results, failures }, null, 2));
writeFileSync(path.join(dir, 'latest.md'), `${report}\n`);
process.stderr.write(`\nraw results: bench/results/${stamp}.json\n`);

if (write) {
  if (failures.length) throw new Error('not writing docs/performance.md: some systems failed');
  const file = path.join(root, 'docs', 'performance.md');
  const text = readFileSync(file, 'utf8');
  const begin = '<!-- bench:begin -->';
  const end = '<!-- bench:end -->';
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`docs/performance.md has no ${begin} … ${end} region`);
  writeFileSync(file, `${text.slice(0, a + begin.length)}\n${report}\n${text.slice(b)}`);
  process.stderr.write('docs/performance.md updated; run `npm run readme`\n');
}
