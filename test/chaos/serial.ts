/**
 * The fault-suite files that must run alone (vitest.chaos.config.ts, one file at a time): they kill
 * worker processes, freeze them, cut connections, restart servers or measure leases and clocks, and
 * two cores are not enough to run anything beside them without turning lease timings into noise. The
 * other files of test/chaos/ (hostile input, the viewer, live channel access) run with the main suite.
 */
export const SERIAL_CHAOS_FILES = [
  'bulk', 'clock', 'connections', 'crash-points', 'database', 'determinism', 'fleet', 'flood', 'leases', 'listen',
  'notify', 'operations', 'pause', 'rerun', 'retention', 'schedules', 'signals', 'versions', 'wait-groups', 'workers',
  'deadlines',
].map((name) => `test/chaos/${name}.test.ts`);
