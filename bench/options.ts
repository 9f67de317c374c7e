/** What one benchmark run measures; bench/run.ts builds it from the command line. */
export interface BenchOptions {
  /** Workflows (or job chains) started at once for the throughput figures. */
  n: number;
  /** Sequential workflows for latency and database cost. */
  seq: number;
  /** Event → resume exchanges. */
  events: number;
  /** Worker process counts for durable-flow's scaling figures. */
  processes: number[];
  /** Idle sleeping + waiting runs (each) present for the latency-with-backlog figures. */
  backlogs: number[];
}

export const FULL: BenchOptions = { n: 2000, seq: 300, events: 100, processes: [1, 2, 4], backlogs: [0, 10_000, 100_000] };

/** A fast smoke run (`npm run bench -- --quick`): same shape, small numbers, figures not comparable. */
export const QUICK: BenchOptions = { n: 200, seq: 30, events: 10, processes: [1, 2], backlogs: [0, 1_000] };
