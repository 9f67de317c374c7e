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

/** Name of the migrated template database: changes whenever a migration does. */
export function templateName(): string {
  const dir = path.resolve(import.meta.dirname, '../../migrations');
  const hash = crypto.createHash('sha1');
  for (const file of fs.readdirSync(dir).sort()) hash.update(file).update(fs.readFileSync(path.join(dir, file)));
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

/** A fresh, migrated database for one test file (a copy of the template), dropped by `drop()`. */
export async function createDatabase(prefix = 't'): Promise<TestDatabase> {
  const name = `df_${prefix}_${crypto.randomBytes(5).toString('hex')}`;
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
  const name = `df_${prefix}_${crypto.randomBytes(5).toString('hex')}`;
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
