import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';
import { SERIAL_CHAOS_FILES } from './test/chaos/serial.js';

/**
 * The fault and bad-input suite (test/chaos, `npm run test:chaos`): real worker processes, a real
 * Postgres (one of its own for the restart test), bounded in time. Files run one at a time: they
 * kill processes, cut connections and restart servers, and two cores are not enough to also run
 * another file beside them without turning lease timings into noise.
 */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: SERIAL_CHAOS_FILES,
    exclude: ['**/node_modules/**'],
    maxWorkers: 1,
    minWorkers: 1,
    testTimeout: 180_000,
    hookTimeout: 60_000,
  },
});
