import type { Timeline, TimelineStep } from '../read/timeline.js';
import { statusClass } from './render.js';
import { formatDuration, formatTime } from './time.js';

/**
 * The timeline chart of a run page: one row per step on a shared time axis, from the run's creation
 * to its end (or now). Positions are percentages of the plot's width, so the chart fills its panel at
 * any width with text at its real size (SVG attributes accept percentages; the Content-Security-Policy
 * allows no inline styles). Bars are coloured by status; sleeps and waits are outlined bars of their
 * own kind; every failed attempt of a step is a marker of its own at the time it failed.
 */

export interface ChartTick {
  /** Position on the plot, 0–100. */
  pct: number;
  label: string;
  anchor: 'start' | 'middle' | 'end';
  /** Every other label: hidden on narrow screens, so the shown ones stay evenly spaced. */
  minor: boolean;
}

export interface ChartFailure {
  pct: number;
  attempt: number;
  title: string;
}

export interface ChartBar {
  stepId: string;
  name: string;
  pct: number;
  widthPct: number;
  title: string;
  cls: string;
  kind: string;
  /** Which legend entry describes this bar. */
  key: string;
  failures: ChartFailure[];
}

export interface ChartKey {
  key: string;
  cls: string;
  kind: string;
  label: string;
}

export interface Chart {
  bars: ChartBar[];
  ticks: ChartTick[];
  legend: ChartKey[];
  /** The failed attempts drawn (the ones steps keep: their last ten each). */
  failedAttempts: number;
  /** What the axis counts from: the run's start (its first claim), or its creation before that. */
  origin: Date;
  originLabel: 'since start' | 'since created';
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Tick steps a reader counts in, smallest first. */
const STEPS = [
  1, 2, 5, 10, 20, 50, 100, 200, 500,
  SECOND, 2 * SECOND, 5 * SECOND, 10 * SECOND, 15 * SECOND, 30 * SECOND,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 60 * DAY, 180 * DAY, 365 * DAY,
];

/** At most this many intervals between ticks: about 120 px apart on a wide screen. */
const MAX_INTERVALS = 8;

/** The smallest step of STEPS that cuts `span` into at most MAX_INTERVALS (whole years beyond). */
export function tickStep(span: number): number {
  const step = STEPS.find((s) => span / s <= MAX_INTERVALS);
  return step ?? Math.ceil(span / MAX_INTERVALS / (365 * DAY)) * 365 * DAY;
}

/** `0`, `+500ms`, `+1m 30s`, `+1h`, `+2d 12h`: exact, so two different offsets never read the same. */
export function offsetLabel(ms: number): string {
  if (ms === 0) return '0';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [['d', DAY], ['h', HOUR], ['m', MINUTE], ['s', SECOND], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0) parts.push(`${n}${unit}`);
  }
  return `+${parts.join(' ')}`;
}

/** Evenly spaced ticks over [0, span], one label each. */
export function chartTicks(span: number): ChartTick[] {
  const step = tickStep(span);
  const count = Math.floor(span / step);
  const ticks: ChartTick[] = [];
  for (let i = 0; i <= count; i++) {
    const pct = round((i * step * 100) / span);
    ticks.push({ pct, label: offsetLabel(i * step), anchor: i === 0 ? 'start' : pct > 94 ? 'end' : 'middle', minor: count > 4 && i % 2 === 1 });
  }
  return ticks;
}

const round = (n: number) => Math.round(n * 1000) / 1000;
const ms = (value: Date | string) => new Date(value).getTime();
const UNFINISHED = ['sleeping', 'waiting', 'running', 'retrying'];
const NOUNS: Record<string, string> = { run: 'step', sleep: 'sleep', wait: 'wait' };

function kindOf(step: TimelineStep): string {
  return step.kind === 'sleep' || step.kind === 'wait' ? step.kind : 'run';
}

interface Failure {
  attempt: number;
  class: string;
  message: string;
  at: string;
}

/** The failed attempts a step keeps in its metadata (attempt.ts). */
export function stepFailures(step: TimelineStep): Failure[] {
  const failures = step.metadata.failures;
  return Array.isArray(failures) ? (failures as Failure[]).filter((f) => f && typeof f.at === 'string') : [];
}

/** What a step's bar says on hover: its state and, by that state, how long it took or since when. */
function barTitle(step: TimelineStep, end: number | null, now: number): string {
  const from = step.startedAt ?? step.createdAt;
  const head = `${step.name} (${NOUNS[kindOf(step)]}): ${step.status}`;
  switch (step.status) {
    case 'waiting':
      return `${head}, waiting since ${formatTime(from, now)}`;
    case 'sleeping':
      return `${head}, sleeping since ${formatTime(from, now)}`;
    case 'running':
      return `${head}, running for ${formatDuration(from, end, now)}`;
    case 'retrying': {
      const last = stepFailures(step).at(-1);
      return last ? `${head}, retrying since ${formatTime(last.at, now)}` : head;
    }
    case 'pending':
      return `${head}, not started`;
    default:
      return step.completedAt ? `${head}, took ${formatDuration(from, step.completedAt, now)}` : head;
  }
}

export function timelineChart(timeline: Timeline, now = Date.now()): Chart {
  const { run } = timeline;
  // From the start, not the creation: the times a run's execution writes (started_at, steps, waits)
  // are on the flow's clock, which the test harness moves; created_at is the database's own.
  const start = ms(run.startedAt ?? run.createdAt);
  const finished = run.completedAt ?? run.failedAt ?? run.cancelledAt;
  const stop = finished ? ms(finished) : null;
  const times = timeline.steps.flatMap(({ step }) => [
    ...[step.startedAt, step.completedAt, step.updatedAt].filter((d): d is Date => d !== null).map(ms),
    ...stepFailures(step).map((f) => ms(f.at)),
  ]);
  const end = Math.max(stop ?? now, ...times.filter(Number.isFinite), start + 1);
  const span = end - start;
  const pctOf = (t: number) => round(Math.min(100, Math.max(0, ((t - start) / span) * 100)));
  const legend = new Map<string, ChartKey & { statuses: Set<string> }>();
  let failedAttempts = 0;
  const bars = timeline.steps.map(({ step }): ChartBar => {
    const from = ms(step.startedAt ?? step.createdAt);
    const to = step.completedAt ? ms(step.completedAt) : UNFINISHED.includes(step.status) ? (stop ?? now) : from;
    const cls = statusClass(step.status);
    const kind = kindOf(step);
    const key = `${cls}-${kind}`;
    const entry = legend.get(key) ?? { key, cls, kind, label: '', statuses: new Set<string>() };
    entry.statuses.add(step.status);
    legend.set(key, entry);
    const failures = stepFailures(step).map((f) => ({
      pct: pctOf(ms(f.at)),
      attempt: f.attempt,
      title: `${step.name}: attempt ${f.attempt} failed at ${formatTime(f.at, now)}: ${f.class}: ${f.message}`,
    }));
    failedAttempts += failures.length;
    const pct = pctOf(from);
    return {
      stepId: step.id,
      name: step.name,
      pct,
      // Never thinner than a hair: an instant step is still seen.
      widthPct: round(Math.max(0.4, pctOf(to) - pct)),
      title: barTitle(step, stop, now),
      cls,
      kind,
      key,
      failures,
    };
  });
  const keys = [...legend.values()]
    .sort((a, b) => a.key.localeCompare(b.key))
    .map(({ statuses, ...entry }) => ({ ...entry, label: `${NOUNS[entry.kind]}: ${[...statuses].sort().join(' / ')}` }));
  return { bars, ticks: chartTicks(span), legend: keys, failedAttempts, origin: new Date(start), originLabel: run.startedAt ? 'since start' : 'since created' };
}
