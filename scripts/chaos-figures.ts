/**
 * Writes the figures of the last fault-suite run (test-results/chaos.jsonl, appended by
 * test/chaos/history.ts reportFigures) into docs/reliability.md, between its chaos markers.
 * Usage: npm run test:chaos && npx tsx scripts/chaos-figures.ts && npm run readme
 */
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const source = path.join(root, 'test-results', 'chaos.jsonl');
if (!fs.existsSync(source)) throw new Error('No test-results/chaos.jsonl: run `npm run test:chaos` first');

interface Figures {
  scenario: string;
  at: string;
  [key: string]: number | string;
}

// The latest line of each scenario.
const latest = new Map<string, Figures>();
for (const line of fs.readFileSync(source, 'utf8').split('\n')) {
  if (!line.trim()) continue;
  const figures = JSON.parse(line) as Figures;
  latest.set(figures.scenario, figures);
}

const faults = (f: Figures): string => {
  if (typeof f.faults === 'string') return f.faults;
  if (f.kills !== undefined) return `${f.kills} SIGKILLs${f.seconds ? ` over ${f.seconds} s` : ''}${f.inFlightAtKill !== undefined ? ` (${f.inFlightAtKill} runs in flight)` : ''}`;
  if (f.backendsTerminated !== undefined) return `${f.rounds} rounds, ${f.backendsTerminated} backends terminated`;
  if (f.restarts !== undefined) return `${f.restarts} crashes (\`pg_ctl stop -m immediate\`) and restarts`;
  return '';
};

const rows = [...latest.values()].sort((a, b) => a.scenario.localeCompare(b.scenario));
const table = [
  '| scenario | runs | workers | faults injected | lost | duplicate outcomes | duplicate step results | completed steps run again | interrupted steps run again |',
  '|---|---:|---:|---|---:|---:|---:|---:|---:|',
  ...rows.map(
    (f) =>
      `| ${f.scenario} | ${f.runs} | ${f.workers} | ${faults(f)} | ${f.lost} | ${f.duplicateOutcomes} | ${f.duplicateCheckpoints} | ${f.completedStepReexecutions} | ${f.interruptedStepReexecutions} |`,
  ),
  '',
  `Figures of the run of ${rows.map((f) => f.at.slice(0, 10)).sort().at(-1)}; every run of \`npm test\` repeats them (faults land at random points, so the counts of interrupted steps vary).`,
].join('\n');

const file = path.join(root, 'docs', 'reliability.md');
const text = fs.readFileSync(file, 'utf8');
const begin = '<!-- chaos:begin -->';
const end = '<!-- chaos:end -->';
const a = text.indexOf(begin);
const b = text.indexOf(end);
if (a < 0 || b < a) throw new Error(`docs/reliability.md has no ${begin} … ${end} region`);
fs.writeFileSync(file, `${text.slice(0, a + begin.length)}\n${table}\n${text.slice(b)}`);
console.log('docs/reliability.md updated; run `npm run readme`');
