import { Counter, Gauge, Registry } from 'prom-client';
import type { RunningWorker } from '../worker/host.js';
import { cumulative } from './buckets.js';
import type { MetricsReads, MetricsSnapshot, SeriesPoint } from './reads.js';

export type MetricsRange = 'hour' | 'day';
/** Points and their width (ms) of each range of the Metrics page. */
export const RANGES: Record<MetricsRange, [number, number]> = { hour: [60, 60_000], day: [96, 15 * 60_000] };

/** What the metrics need of their flow. */
export interface MetricsHost {
  reads(): MetricsReads;
  /** The flow's running workers (this process's). */
  workers(): Iterable<RunningWorker>;
  clockOffsetMs(): number;
}

const CLUSTER = 'Cluster-wide (from the database; every process reports the same).';
const PROCESS = 'This process only (its workers).';

/** A histogram whose buckets come from the database (prom-client's Histogram only counts observations of its own). */
interface StoredHistogram {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: { metricName: string; labels: Record<string, string>; value: number }[] };
}

/**
 * A flow's Prometheus metrics (`GET <mount>/metrics`), in a Registry of the flow's own (never prom-client's
 * global one: two flows in a process do not clash; merge it into yours with `Registry.merge`). Counts
 * and histograms are cluster-wide, read from the tables of migration 016 at each scrape; worker slots
 * and lease losses are this process's.
 */
export class FlowMetrics {
  /** The flow's own registry. */
  readonly registry = new Registry();
  readonly #host: MetricsHost;
  #snapshot: MetricsSnapshot = { runs: [], totals: [], histograms: [], lag: [] };
  /** Lease losses of this process's workers that have stopped (a running worker's are in its stats). */
  #stoppedLost = 0;

  constructor(host: MetricsHost) {
    this.#host = host;
    const snap = () => this.#snapshot;
    const registers = [this.registry];
    new Gauge({
      name: 'durable_flow_runs', help: `Runs now in each status, by workflow. ${CLUSTER}`, labelNames: ['workflow', 'status'], registers,
      collect() {
        this.reset();
        for (const r of snap().runs) this.set({ workflow: r.workflow, status: r.status }, r.runs);
      },
    });
    for (const [field, verb] of [['started', 'began (first claimed)'], ['completed', 'completed'], ['failed', 'failed'], ['cancelled', 'were cancelled']] as const) {
      new Counter({
        name: `durable_flow_runs_${field}_total`, help: `Runs that ${verb}, by workflow, since the metrics began (migration 016). ${CLUSTER}`, labelNames: ['workflow'], registers,
        collect() {
          this.reset();
          for (const t of snap().totals) this.inc({ workflow: t.workflow }, t[field]);
        },
      });
    }
    new Gauge({
      name: 'durable_flow_queue_lag_seconds', help: `Age of each workflow's oldest due run not yet claimed, labelled with that run's queue (absent: none due). ${CLUSTER}`, labelNames: ['workflow', 'queue'], registers,
      collect() {
        this.reset();
        for (const l of snap().lag) this.set({ workflow: l.workflow, queue: l.queue }, l.seconds);
      },
    });
    this.registry.registerMetric(this.#histogram('durable_flow_step_duration_seconds', 'step', `Duration of steps that succeeded or failed (from the step's start to its end), by workflow. ${CLUSTER}`) as never);
    this.registry.registerMetric(
      this.#histogram('durable_flow_event_resume_seconds', 'resume', `From an event (or signal, or child's end) waking a waiting run to the claim that resumes it, by workflow; runs leased to a worker in the event's own transaction are not sampled. ${CLUSTER}`) as never,
    );
    const workers = () => [...host.workers()];
    const lost = () => this.#stoppedLost + workers().reduce((sum, w) => sum + w.stats.lost, 0);
    new Counter({
      name: 'durable_flow_lease_losses_total', help: `Executions that stopped because their run's lease was lost (taken by another worker after expiring). ${PROCESS}`, registers,
      collect() {
        this.reset();
        this.inc(lost());
      },
    });
    new Gauge({
      name: 'durable_flow_worker_slots', help: `Worker slots of this process: state="total" (its workers' concurrency) and state="busy" (runs executing). ${PROCESS}`, labelNames: ['state'], registers,
      collect() {
        this.set({ state: 'total' }, workers().reduce((sum, w) => sum + w.concurrency, 0));
        this.set({ state: 'busy' }, workers().reduce((sum, w) => sum + w.active, 0));
      },
    });
  }

  /** The Prometheus text of every metric (one read of the database). */
  async text(): Promise<string> {
    this.#snapshot = await this.#host.reads().snapshot(this.#host.clockOffsetMs());
    return this.registry.metrics();
  }

  /** The content type of `text()`. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Metrics page's points: the last hour by minute, or the last day by 15 minutes (flow clock). */
  series(range: MetricsRange, workflow: string | null): Promise<SeriesPoint[]> {
    const [points, stepMs] = RANGES[range];
    return this.#host.reads().series(this.#host.clockOffsetMs(), points, stepMs, workflow);
  }

  /** A worker of the flow started or stopped: a stopped worker's lease losses stay counted. */
  tracked(worker: RunningWorker, active: boolean): void {
    if (!active) this.#stoppedLost += worker.stats.lost;
  }

  #histogram(name: string, kind: 'step' | 'resume', help: string): StoredHistogram {
    const snap = () => this.#snapshot;
    const base = { name, help, type: 'histogram' as const, aggregator: 'sum' as const };
    return {
      ...base,
      get: () => ({
        ...base,
        values: snap().histograms.filter((h) => h.kind === kind).flatMap(({ workflow, buckets }) => [
          ...cumulative(buckets).map(({ le, count }) => ({ metricName: `${name}_bucket`, labels: { workflow, le }, value: count })),
          { metricName: `${name}_sum`, labels: { workflow }, value: buckets.sumSeconds },
          { metricName: `${name}_count`, labels: { workflow }, value: buckets.samples },
        ]),
      }),
    };
  }
}
