import type { Request, RequestHandler, Response, Router } from 'express';
import { quantile } from '../metrics/buckets.js';
import type { Buckets } from '../metrics/buckets.js';
import type { FlowMetrics, MetricsRange } from '../metrics/flow-metrics.js';
import type { SeriesPoint } from '../metrics/reads.js';
import { HttpError, onlyParameters, text } from './params.js';

/** What the metrics routes need of the router that mounts them (router.ts's own helpers). */
export interface MetricsPageDeps {
  metrics: Pick<FlowMetrics, 'text' | 'contentType' | 'series'>;
  page(req: Request, res: Response, view: string, data: Record<string, unknown>, fragment?: string): Promise<void>;
  handle(fn: (req: Request, res: Response) => Promise<void>): RequestHandler;
}

/** One bar of a chart: positions in percent of the plot (the CSP allows no inline styles). */
export interface MetricBar { x: number; width: number; y: number; height: number; title: string; cls: string }
export interface MetricChart { id: string; title: string; unit: string; max: string; bars: MetricBar[]; legend: { cls: string; label: string }[]; empty: boolean; emptyText: string }

const round = (n: number) => Math.round(n * 1000) / 1000;
const ms = (seconds: number | null) => (seconds === null ? null : seconds * 1000);
const fmt = (n: number, unit: string) => (unit === 'ms' ? `${n < 10 ? n.toFixed(2) : Math.round(n)} ms` : `${Math.round(n * 100) / 100}`);

/** Bars of several series per point (drawn in order, each over the previous: a p99 behind its p50). */
function chart(
  id: string, title: string, unit: string, points: SeriesPoint[], series: { cls: string; label: string; value: (p: SeriesPoint) => number | null }[],
  emptyText = 'Nothing in this range.',
): MetricChart {
  const values = points.map((p) => series.map((s) => s.value(p)));
  const max = Math.max(0, ...values.flat().map((v) => v ?? 0));
  const width = 100 / points.length;
  const bars: MetricBar[] = [];
  points.forEach((point, i) => {
    series.forEach((s, k) => {
      const v = values[i]![k];
      if (v === null || v === undefined || v <= 0 || max === 0) return;
      const height = round(Math.max(0.5, (v / max) * 100));
      bars.push({ x: round(i * width + width * 0.1), width: round(width * 0.8), y: round(100 - height), height, cls: s.cls, title: `${point.at.toISOString().slice(11, 16)} UTC: ${s.label} ${fmt(v, unit)}` });
    });
  });
  return { id, title, unit, max: max === 0 ? '0' : fmt(max, unit), bars, legend: series.map(({ cls, label }) => ({ cls, label })), empty: max === 0, emptyText };
}

const q = (b: Buckets, p: number) => ms(quantile(b, p));

/** The Metrics page's charts over the points of its range. */
export function metricCharts(points: SeriesPoint[]): MetricChart[] {
  return [
    chart('throughput', 'Throughput: runs completed', 'runs', points, [{ cls: 'ok', label: 'completed', value: (p) => p.completed }]),
    chart('failures', 'Failures: runs failed', 'runs', points, [{ cls: 'bad', label: 'failed', value: (p) => p.failed }]),
    chart('lag', 'Queue lag (oldest due run, mean of samples)', 'ms', points, [{ cls: 'warn', label: 'lag', value: (p) => (p.lag.samples ? (p.lag.sumSeconds / p.lag.samples) * 1000 : null) }],
      // Sampled (once a minute a process) only while a run is due and not yet claimed: no sample is no wait.
      'No run waited for a worker in this range.'),
    chart('resume', 'Event → resume latency', 'ms', points, [
      { cls: 'p99', label: 'p99', value: (p) => q(p.resume, 0.99) },
      { cls: 'p50', label: 'p50', value: (p) => q(p.resume, 0.5) },
    ]),
    chart('steps', 'Step durations', 'ms', points, [
      { cls: 'p99', label: 'p99', value: (p) => q(p.step, 0.99) },
      { cls: 'p50', label: 'p50', value: (p) => q(p.step, 0.5) },
    ]),
  ];
}

function rangeOf(query: Request['query']): MetricsRange {
  const range = text(query.range, 'range', 10) ?? 'hour';
  if (range !== 'hour' && range !== 'day') throw new HttpError(400, 'Invalid range: expected hour or day');
  return range;
}

/**
 * `GET <mount>/metrics`: the Prometheus text (behind the router's access check, like every route but
 * the signed ingest); `GET <mount>/metrics/page`: the Metrics page, live; `GET <mount>/api/metrics`: its points.
 */
export function mountMetricsPage(router: Router, deps: MetricsPageDeps): void {
  router.get('/metrics', deps.handle(async (req, res) => {
    onlyParameters(req.query, []);
    const body = await deps.metrics.text();
    res.set('Content-Type', deps.metrics.contentType).send(body);
  }));
  const data = async (req: Request) => {
    onlyParameters(req.query, ['range', 'workflow', 'fragment']);
    const range = rangeOf(req.query);
    const workflow = text(req.query.workflow, 'workflow', 255);
    const points = await deps.metrics.series(range, workflow);
    return { range, workflow, points };
  };
  router.get('/metrics/page', deps.handle(async (req, res) => {
    const { range, workflow, points } = await data(req);
    const totals = points.reduce((sum, p) => ({ completed: sum.completed + p.completed, failed: sum.failed + p.failed, started: sum.started + p.started }), { completed: 0, failed: 0, started: 0 });
    const first = points[0]?.at ?? new Date();
    await deps.page(req, res, 'metrics', { range, workflow, charts: metricCharts(points), totals, from: first, live: 'runs', pageUrl: `${req.baseUrl}/metrics/page?range=${range}${workflow ? `&workflow=${encodeURIComponent(workflow)}` : ''}` }, 'metrics-charts');
  }));
  router.get('/api/metrics', deps.handle(async (req, res) => {
    const { range, workflow, points } = await data(req);
    res.json({
      range, workflow,
      points: points.map((p) => ({
        at: p.at, started: p.started, completed: p.completed, failed: p.failed, cancelled: p.cancelled,
        stepMs: { samples: p.step.samples, p50: q(p.step, 0.5), p99: q(p.step, 0.99) },
        resumeMs: { samples: p.resume.samples, p50: q(p.resume, 0.5), p99: q(p.resume, 0.99) },
        lagMs: p.lag.samples ? (p.lag.sumSeconds / p.lag.samples) * 1000 : null,
      })),
    });
  }));
}
