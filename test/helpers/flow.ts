import { afterAll, afterEach, beforeAll } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import type { DurableFlowOptions } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import type { TestHarness } from '../../lib/testing/index.js';
import { createDatabase } from './db.js';
import type { TestDatabase } from './db.js';

export interface TestContext {
  db: TestDatabase;
  flows: DurableFlow[];
  /** A new flow on the test database (closed by cleanup()). */
  flow(options?: DurableFlowOptions): DurableFlow;
  /** Closes the flows made so far (a file whose tests each make flows: their pools do not pile up). */
  closeFlows(): Promise<void>;
  /** A new flow, migrated, with a test harness driving it (no worker: drain() runs what is due). */
  harnessed(options?: DurableFlowOptions): Promise<{ flow: DurableFlow; harness: TestHarness }>;
  cleanup(): Promise<void>;
}

export async function setupDatabase(prefix?: string): Promise<TestContext> {
  const db = await createDatabase(prefix);
  const flows: DurableFlow[] = [];
  const context: TestContext = {
    db,
    flows,
    flow(options: DurableFlowOptions = {}) {
      const flow = new DurableFlow({ databaseUrl: db.url, logger: false, ...options });
      flows.push(flow);
      return flow;
    },
    async harnessed(options: DurableFlowOptions = {}) {
      const flow = context.flow(options);
      await flow.migrate();
      return { flow, harness: createTestHarness(flow) };
    },
    async closeFlows() {
      const open = flows.splice(0);
      await Promise.all(open.map((flow) => flow.close({ timeout: 1000 }).catch(() => undefined)));
    },
    async cleanup() {
      await Promise.all(flows.map((flow) => flow.close({ timeout: 1000 }).catch(() => undefined)));
      await db.drop();
    },
  };
  return context;
}

/** Polls `check` until it returns a truthy value (or throws after `timeoutMs`). Never a fixed sleep. */
export async function eventually<T>(check: () => Promise<T> | T, timeoutMs = 10_000, intervalMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`Condition not met within ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * The set-up of a test file whose tests each make their own flows: a database for the file, the flows
 * closed after each test (or their pools pile up past the shared server's max_connections while other
 * files run beside it), the database dropped at the end. Call at the top of the file; read `.ctx` in tests.
 */
export function databasePerFile(prefix: string): { readonly ctx: TestContext } {
  let ctx: TestContext | undefined;
  beforeAll(async () => {
    ctx = await setupDatabase(prefix);
  });
  afterEach(async () => {
    await ctx?.closeFlows();
  });
  afterAll(async () => {
    await ctx?.cleanup();
  });
  return {
    get ctx() {
      if (!ctx) throw new Error('databasePerFile: the database is made in beforeAll');
      return ctx;
    },
  };
}
