/**
 * Writes test/fixtures/schema.sql: the schema a fresh migrate() leaves (tables, columns, constraints,
 * indexes, functions, triggers), which test/integration/schema-snapshot.test.ts compares with a freshly
 * migrated database. Run it after changing a migration or a function file, and commit the result.
 * Usage: npm run schema:snapshot (needs the test Postgres, TEST_ADMIN_DATABASE_URL or 127.0.0.1:5432).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DurableFlow } from '../lib/index.js';
import { createEmptyDatabase } from '../test/helpers/db.js';
import { describeSchema, SNAPSHOT_FILE } from '../test/helpers/schema.js';

const db = await createEmptyDatabase('snap');
try {
  const flow = new DurableFlow({ databaseUrl: db.url, logger: false });
  try {
    await flow.migrate();
    const text = await describeSchema(flow.pool, 'public');
    fs.writeFileSync(path.resolve(import.meta.dirname, '..', SNAPSHOT_FILE), text);
    console.log(`wrote ${SNAPSHOT_FILE}`);
  } finally {
    await flow.close();
  }
} finally {
  await db.drop();
}
