import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

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
    // The fault suite runs on its own, one file at a time: `npm run test:chaos` (vitest.chaos.config.ts).
    exclude: ['test/chaos/**', '**/node_modules/**'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Two cores shared with Postgres: more parallel files only add noise.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
