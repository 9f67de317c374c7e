import { describe, expect, it } from 'vitest';
import { chartTicks, offsetLabel, tickStep, timelineChart } from '../../lib/http/chart.js';
import type { Timeline, TimelineStep } from '../../lib/read/timeline.js';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('timeline ticks', () => {
  it('take a step a reader counts in, at most eight intervals over the span', () => {
    expect(tickStep(4 * SECOND)).toBe(500);
    expect(tickStep(95 * SECOND)).toBe(15 * SECOND);
    expect(tickStep(3 * MINUTE)).toBe(30 * SECOND);
    expect(tickStep(7 * MINUTE)).toBe(MINUTE);
    expect(tickStep(2 * HOUR)).toBe(15 * MINUTE);
    expect(tickStep(20 * HOUR)).toBe(3 * HOUR);
    expect(tickStep(3 * DAY)).toBe(12 * HOUR);
    expect(tickStep(40 * DAY)).toBe(7 * DAY);
    expect(tickStep(30 * 365 * DAY)).toBe(4 * 365 * DAY);
  });

  it('label offsets exactly, so two ticks never read the same', () => {
    expect(offsetLabel(0)).toBe('0');
    expect(offsetLabel(500)).toBe('+500ms');
    expect(offsetLabel(90 * SECOND)).toBe('+1m 30s');
    expect(offsetLabel(HOUR)).toBe('+1h');
    expect(offsetLabel(2 * DAY + 12 * HOUR)).toBe('+2d 12h');
  });

  // Spans like those that printed `+1s +1s` and `+1m +1m` (a quarter of 5 s or of 5 min, rounded).
  it.each([1, 999, 1500, 5 * SECOND, 5 * MINUTE, 5 * MINUTE + 1, 61 * MINUTE, 25 * HOUR, 9 * DAY, 400 * DAY])(
    'over %i ms: evenly spaced, unique, in order, within the plot',
    (span) => {
      const ticks = chartTicks(span);
      expect(ticks.length).toBeGreaterThanOrEqual(span === 1 ? 2 : 3);
      expect(ticks.length).toBeLessThanOrEqual(9);
      expect(new Set(ticks.map((t) => t.label)).size).toBe(ticks.length);
      const gaps = ticks.slice(1).map((t, i) => t.pct - ticks[i]!.pct);
      for (const gap of gaps) expect(gap).toBeGreaterThan(0);
      for (const gap of gaps) expect(Math.abs(gap - gaps[0]!)).toBeLessThan(0.01);
      expect(ticks[0]).toMatchObject({ pct: 0, label: '0', anchor: 'start' });
      expect(ticks.at(-1)!.pct).toBeLessThanOrEqual(100);
      // Thinned on narrow screens: every other label, so the shown ones stay evenly spaced.
      if (ticks.length > 5) expect(ticks.map((t) => t.minor)).toEqual(ticks.map((_, i) => i % 2 === 1));
    },
  );
});

const t0 = Date.parse('2026-12-02T10:00:00Z');
const at = (ms: number) => new Date(t0 + ms);

function step(over: Partial<TimelineStep>): TimelineStep {
  return {
    id: '1', name: 'a', kind: 'run', status: 'succeeded', attempts: 1, position: 0, result: null, error: null, cursor: null,
    metadata: {}, startedAt: at(0), completedAt: at(SECOND), createdAt: at(0), updatedAt: at(SECOND), ...over,
  };
}

function timeline(steps: TimelineStep[], run: Partial<Timeline['run']> = {}): Timeline {
  return {
    run: { createdAt: at(0), completedAt: null, failedAt: null, cancelledAt: null, ...run } as Timeline['run'],
    steps: steps.map((s) => ({ step: s, logs: [], waits: [], events: [], signals: [] })),
    runLogs: [],
    signals: [],
    items: [],
  };
}

describe('the timeline chart', () => {
  it('draws every failed attempt of every step at the time it failed, the last of a failed step too', () => {
    const failures = (n: number) => Array.from({ length: n }, (_, i) => ({ attempt: i + 1, class: 'Error', message: `boom ${i + 1}`, at: at((i + 1) * 10 * SECOND).toISOString() }));
    const chart = timelineChart(
      timeline(
        [
          step({ id: '1', name: 'flaky', attempts: 3, metadata: { failures: failures(2) }, completedAt: at(30 * SECOND) }),
          step({ id: '2', name: 'doomed', status: 'failed', attempts: 4, metadata: { failures: failures(4) }, startedAt: at(30 * SECOND), completedAt: at(40 * SECOND) }),
        ],
        { failedAt: at(100 * SECOND) },
      ),
    );
    expect(chart.failedAttempts).toBe(6);
    expect(chart.bars.map((b) => b.failures.length)).toEqual([2, 4]);
    expect(chart.bars[0]!.failures.map((f) => f.pct)).toEqual([10, 20]);
    expect(chart.bars[1]!.failures[3]!.title).toBe('doomed: attempt 4 failed at Dec 2, 10:00:40 UTC: Error: boom 4');
  });

  it('has one legend entry per colour and kind drawn, named after the statuses it stands for', () => {
    const chart = timelineChart(
      timeline([
        step({ id: '1', name: 'a' }),
        step({ id: '2', name: 'b', kind: 'sleep' }),
        step({ id: '3', name: 'c', kind: 'wait', status: 'waiting', completedAt: null }),
        step({ id: '4', name: 'd', status: 'retrying', completedAt: null }),
        step({ id: '5', name: 'e', status: 'running', completedAt: null }),
      ]),
      t0 + MINUTE,
    );
    expect(chart.legend.map((k) => [k.key, k.label])).toEqual([
      ['active-run', 'step: retrying / running'],
      ['success-run', 'step: succeeded'],
      ['success-sleep', 'sleep: succeeded'],
      ['waiting-wait', 'wait: waiting'],
    ]);
    expect(new Set(chart.bars.map((b) => b.key))).toEqual(new Set(chart.legend.map((k) => k.key)));
  });

  it('says how long a finished step took, and since when an unfinished one waits or runs', () => {
    const chart = timelineChart(
      timeline([
        step({ id: '1', name: 'done', completedAt: at(3 * SECOND) }),
        step({ id: '2', name: 'approval', kind: 'wait', status: 'waiting', startedAt: at(5 * SECOND), completedAt: null }),
        step({ id: '3', name: 'work', status: 'running', startedAt: at(10 * SECOND), completedAt: null }),
        step({ id: '4', name: 'flaky', status: 'retrying', completedAt: null, metadata: { failures: [{ attempt: 1, class: 'Error', message: 'x', at: at(20 * SECOND).toISOString() }] } }),
      ]),
      t0 + 2 * MINUTE,
    );
    expect(chart.bars.map((b) => b.title)).toEqual([
      'done (step): succeeded, took 3s',
      'approval (wait): waiting, waiting since Dec 2, 10:00:05 UTC',
      'work (step): running, running for 1m',
      'flaky (step): retrying, retrying since Dec 2, 10:00:20 UTC',
    ]);
    for (const bar of chart.bars.slice(1)) expect(bar.title).not.toContain('took');
    // Unfinished bars reach now, the end of the axis.
    expect(chart.bars[1]!.pct + chart.bars[1]!.widthPct).toBeCloseTo(100, 1);
  });

  it("counts from the run's start once it has one (its creation is on another clock under the test harness)", () => {
    const queued = timelineChart(timeline([step({ status: 'pending', startedAt: null, completedAt: null })]), t0 + MINUTE);
    expect([queued.origin.getTime(), queued.originLabel]).toEqual([t0, 'since created']);
    const started = timelineChart(timeline([step({ startedAt: at(5 * MINUTE), completedAt: at(6 * MINUTE) })], { startedAt: at(5 * MINUTE), completedAt: at(6 * MINUTE) }));
    expect([started.origin.getTime(), started.originLabel]).toEqual([t0 + 5 * MINUTE, 'since start']);
    expect([started.bars[0]!.pct, started.bars[0]!.widthPct]).toEqual([0, 100]);
  });
});
