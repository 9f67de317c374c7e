import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { packageDir } from '../paths.js';
import type { Tables } from './tables.js';
import { quoteIdent } from './tables.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

let cached: Migration[] | undefined;

export function loadMigrations(): Migration[] {
  if (cached) return cached;
  const dir = packageDir('migrations', '001_initial.sql');
  cached = fs
    .readdirSync(dir)
    .filter((file) => /^\d+_.+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      version: Number.parseInt(file, 10),
      name: file.replace(/\.sql$/, ''),
      sql: fs.readFileSync(path.join(dir, file), 'utf8'),
    }));
  return cached;
}

function render(sql: string, tables: Tables): string {
  return sql.replaceAll('{{schema}}', quoteIdent(tables.schema)).replaceAll('{{channel}}', tables.channelPrefix);
}

export interface MigrateResult {
  applied: string[];
  /** Versions recorded in the database that this release does not know (a newer release migrated it). */
  unknown: number[];
}

/**
 * Brings the schema up to date. Idempotent, and safe when several processes call it at once: a
 * session advisory lock admits one migrator at a time, and each migration commits together with its
 * row in the migrations table, so a crash half-way leaves nothing half-applied.
 */
export async function migrate(pool: pg.Pool, tables: Tables): Promise<MigrateResult> {
  const client = await pool.connect();
  let broken = false;
  try {
    // Lock (namespace, 0): the migrator's. Held for the session, released in finally.
    await client.query('SELECT pg_advisory_lock($1, 0)', [tables.lockNamespace]);
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(tables.schema)}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${tables.migrations} (
           version integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${tables.migrations}`);
      const done = new Set(rows.map((row) => row.version));
      const migrations = loadMigrations();
      const applied: string[] = [];
      for (const migration of migrations) {
        if (done.has(migration.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(render(migration.sql, tables));
          await client.query(`INSERT INTO ${tables.migrations} (version, name) VALUES ($1, $2)`, [
            migration.version,
            migration.name,
          ]);
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK');
          throw new Error(`durable-flow: migration ${migration.name} failed: ${(error as Error).message}`, {
            cause: error,
          });
        }
        applied.push(migration.name);
      }
      const known = new Set(migrations.map((m) => m.version));
      return { applied, unknown: [...done].filter((v) => !known.has(v)).sort((a, b) => a - b) };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, 0)', [tables.lockNamespace]).catch(() => {
        broken = true;
      });
    }
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    client.release(broken);
  }
}
