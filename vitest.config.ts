import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import { SERIAL_CHAOS_FILES } from './test/chaos/serial.js';

const lib = (file: string) => fileURLToPath(new URL(`./lib/${file}`, import.meta.url));

export default defineConfig({
  resolve: {
    // The README's examples import the package by its name; in this repository that is lib/.
    alias: [
      { find: /^durable-flow\/testing$/, replacement: lib('testing/index.ts') },
      { find: /^durable-flow$/, replacement: lib('index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    // The fault-suite files that kill processes or measure leases run on their own, one at a time:
    // `npm run test:chaos` (vitest.chaos.config.ts). The rest of test/chaos/ runs here.
    exclude: [...SERIAL_CHAOS_FILES, '**/node_modules/**'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Two cores shared with Postgres: more parallel files only add noise.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 180_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
