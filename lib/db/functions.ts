import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { packageDir } from '../paths.js';
import type { Tables } from './tables.js';
import { CONCURRENCY_LOCK_NAMESPACE, quoteIdent } from './tables.js';

/** One file of lib/db/functions/: a PL/pgSQL (or SQL) function, with the triggers that call it. */
export interface FunctionFile {
  name: string;
  sql: string;
}

let cached: FunctionFile[] | undefined;

/** The function files, in file-name order (the order migrate() applies them in). */
export function loadFunctions(): FunctionFile[] {
  if (cached) return cached;
  const dir = packageDir(path.join('lib', 'db', 'functions'), 'claim.sql');
  cached = fs
    .readdirSync(dir)
    .filter((file) => /^[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => ({ name: file.replace(/\.sql$/, ''), sql: fs.readFileSync(path.join(dir, file), 'utf8') }));
  return cached;
}

export function renderFunction(sql: string, tables: Tables): string {
  return sql
    .replaceAll('{{schema}}', quoteIdent(tables.schema))
    .replaceAll('{{channel}}', tables.channelPrefix)
    .replaceAll('{{concurrency_lock_namespace}}', String(CONCURRENCY_LOCK_NAMESPACE));
}

const HASH_PREFIX = 'durable-flow functions sha256:';

/** The hash of every function file as this schema renders them: what the database records once applied. */
export function functionsHash(tables: Tables): string {
  const hash = createHash('sha256');
  for (const file of loadFunctions()) hash.update(`${file.name}\n${renderFunction(file.sql, tables)}\n`);
  return hash.digest('hex');
}

/**
 * Applies every function file (CREATE OR REPLACE; triggers dropped and created again) in one
 * transaction, unless the database records that it already has exactly these files: the hash of all
 * of them is kept as the comment of the migrations table, which the migrator owns. The caller holds the
 * migrator's advisory lock. Returns whether anything was applied.
 *
 * Skipping matters: dropping and creating a trigger takes an exclusive lock on its table, which would
 * stall every worker at each process's boot.
 */
export async function applyFunctions(client: pg.PoolClient, tables: Tables): Promise<boolean> {
  const hash = functionsHash(tables);
  const { rows } = await client.query<{ comment: string | null }>(
    `SELECT obj_description(to_regclass($1), 'pg_class') AS comment`,
    [tables.migrations],
  );
  if (rows[0]?.comment === HASH_PREFIX + hash) return false;
  await client.query('BEGIN');
  try {
    for (const file of loadFunctions()) {
      try {
        await client.query(renderFunction(file.sql, tables));
      } catch (error) {
        throw new Error(`durable-flow: function file ${file.name}.sql failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    await client.query(`COMMENT ON TABLE ${tables.migrations} IS '${HASH_PREFIX}${hash}'`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  return true;
}
