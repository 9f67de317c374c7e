import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import { createEmptyDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { describeSchema, SNAPSHOT_FILE } from '../helpers/schema.js';

describe('the schema snapshot', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createEmptyDatabase('snap');
  });
  afterAll(async () => {
    await db.drop();
  });

  it(`${SNAPSHOT_FILE} is what a fresh migrate() leaves in the database`, async () => {
    const flow = new DurableFlow({ databaseUrl: db.url, logger: false });
    try {
      await flow.migrate();
      const actual = await describeSchema(flow.pool, 'public');
      const expected = fs.readFileSync(path.resolve(import.meta.dirname, '../..', SNAPSHOT_FILE), 'utf8');
      const first = actual.split('\n').findIndex((line, i) => line !== expected.split('\n')[i]);
      expect(
        actual,
        `${SNAPSHOT_FILE} differs from a freshly migrated database (first at line ${first + 1}). If the change is intended, run \`npm run schema:snapshot\` and commit the file.`,
      ).toBe(expected);
    } finally {
      await flow.close();
    }
  });
});
