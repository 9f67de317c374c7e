import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { packageDir } from '../paths.js';
import type { Tables } from './tables.js';
import { MIGRATOR_LOCK_KEY, quoteIdent, renderSql } from './tables.js';
import { applyFunctions } from './functions.js';
import { ownsBackend, poolerError } from './direct.js';

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

/** The channel migrate() announces a newly applied schema on; workers check their schema when it fires. */
export function migrationsChannel(tables: Tables): string {
  return `${tables.channelPrefix}migrations`;
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
export async function migrate(pool: pg.Pool, tables: Tables, options: { checkSession?: boolean } = {}): Promise<MigrateResult> {
  const client = await pool.connect();
  let broken = false;
  try {
    // Through a pooler in transaction mode the lock below could be taken on one server connection and
    // the unlock sent to another: it would stay held (`checkSession`: no `directUrl` was given).
    if (options.checkSession && !(await ownsBackend(client))) throw poolerError();
    // The migrator's lock (LOCK_NAMESPACE, MIGRATOR_LOCK_KEY). Held for the session, released in finally.
    await client.query('SELECT pg_advisory_lock($1, $2)', [tables.lockNamespace, MIGRATOR_LOCK_KEY]);
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
          await client.query(renderSql(migration.sql, tables));
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
      const unknown = [...done].filter((v) => !known.has(v)).sort((a, b) => a - b);
      // The current functions (lib/db/functions/), after the numbered migrations, unless a newer release
      // migrated this database: its functions are newer than ours.
      if (unknown.length === 0) await applyFunctions(client, tables);
      // Workers of every release check their schema now, rather than at their next low-rate check:
      // those of an older release stop claiming, those waiting for these migrations start.
      if (applied.length > 0) {
        await client.query('SELECT pg_notify($1, $2)', [migrationsChannel(tables), String(migrations.at(-1)!.version)]);
      }
      return { applied, unknown };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, $2)', [tables.lockNamespace, MIGRATOR_LOCK_KEY]).catch(() => {
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

/** How the database's migrations compare with this release's. */
export interface SchemaCheck {
  /** Migrations of this release the database lacks (migrate() has not run since an upgrade). */
  missing: string[];
  /** Versions the database has that this release does not know (a newer release migrated it). */
  unknown: number[];
}

export async function checkSchema(pool: pg.Pool, tables: Tables): Promise<SchemaCheck> {
  let versions: number[] = [];
  try {
    const { rows } = await pool.query<{ version: number }>(`SELECT version FROM ${tables.migrations}`);
    versions = rows.map((row) => row.version);
  } catch (error) {
    // No migrations table: never migrated (every migration is missing).
    if ((error as { code?: string }).code !== '42P01') throw error;
  }
  const present = new Set(versions);
  const migrations = loadMigrations();
  const known = new Set(migrations.map((m) => m.version));
  return {
    missing: migrations.filter((m) => !present.has(m.version)).map((m) => m.name),
    unknown: versions.filter((v) => !known.has(v)).sort((a, b) => a - b),
  };
}

/** What a worker says (and why it claims nothing) when the schema is not the one it was written for; null if it is. */
export function schemaProblem(check: SchemaCheck): string | null {
  if (check.unknown.length > 0) {
    const latest = loadMigrations().at(-1)!.name;
    return (
      `The database was migrated by a newer durable-flow release (migration ${check.unknown.join(', ')}; this release knows up to ${latest}). ` +
      'This worker claims no runs against a schema it does not know, and hands back the runs it executes: upgrade durable-flow in this process and restart it.'
    );
  }
  if (check.missing.length > 0) {
    return (
      `The database lacks durable-flow ${check.missing.length === 1 ? 'migration' : 'migrations'} ${check.missing.join(', ')}, which this release needs. ` +
      `This worker claims no runs until ${check.missing.length === 1 ? 'it is' : 'they are'} applied: call await flow.migrate() at boot (safe from any number of processes).`
    );
  }
  return null;
}
