import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';

/** The server tests create their databases on (trust auth, user postgres). */
export const ADMIN_URL = process.env.TEST_ADMIN_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function urlFor(database: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Name of the migrated template database: changes whenever a migration or a function file does. */
export function templateName(): string {
  const hash = crypto.createHash('sha1');
  for (const folder of ['migrations', 'lib/db/functions']) {
    const dir = path.resolve(import.meta.dirname, '../..', folder);
    for (const file of fs.readdirSync(dir).sort()) hash.update(`${folder}/${file}`).update(fs.readFileSync(path.join(dir, file)));
  }
  return `durable_flow_tmpl_${hash.digest('hex').slice(0, 12)}`;
}

export async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** `df_<prefix>_<creation time, base 36>_<random>`: global setup drops only test databases old enough to be leftovers. */
function databaseName(prefix: string): string {
  return `df_${prefix}_${Date.now().toString(36)}_${crypto.randomBytes(4).toString('hex')}`;
}

/**
 * When a test database named by `databaseName` was created (epoch ms), or null for another name. The
 * benchmarks' databases (bench/anchors/common.ts createDb: `df_<prefix>_<time, base 36>_<6 base-36
 * characters>`) are read the same way, so a test run started during a bench leaves them alone.
 */
export function createdAt(name: string): number | null {
  const match = /^df_.*_([0-9a-z]{8,9})_(?:[0-9a-f]{8}|[0-9a-z]{6})$/.exec(name);
  return match ? parseInt(match[1]!, 36) : null;
}

/** A fresh, migrated database for one test file (a copy of the template), dropped by `drop()`. */
export async function createDatabase(prefix = 't'): Promise<TestDatabase> {
  const name = databaseName(prefix);
  const template = templateName();
  await admin(async (client) => {
    await client.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
  });
  return {
    name,
    url: urlFor(name),
    drop: () =>
      admin(async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }),
  };
}

/** An empty database (not migrated), for migration tests. */
export async function createEmptyDatabase(prefix = 'e'): Promise<TestDatabase> {
  const name = databaseName(prefix);
  await admin((client) => client.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: urlFor(name),
    drop: () =>
      admin(async (client) => {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      }),
  };
}
