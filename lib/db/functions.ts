import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { packageDir } from '../paths.js';
import type { Tables } from './tables.js';
import { renderSql } from './tables.js';

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

/** This release's version (package.json), recorded with the hash of the functions it applied. */
function releaseVersion(): string {
  const dir = packageDir('.', 'package.json');
  return (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

/** -1, 0 or 1 as version a is older than, the same as or newer than b (x.y.z; a pre-release tag is ignored). */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) =>
    v
      .split(/[-+]/)[0]!
      .split('.')
      .map((n) => Number.parseInt(n, 10) || 0);
  const [pa, pb] = [parts(a), parts(b)];
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** The comment of the migrations table once the functions are applied: 'durable-flow functions <version> sha256:<hash>'. */
export function functionsComment(tables: Tables, version = releaseVersion()): string {
  return `durable-flow functions ${version} sha256:${functionsHash(tables)}`;
}

/** The hash of every function file as this schema renders them: what the database records once applied. */
export function functionsHash(tables: Tables): string {
  const hash = createHash('sha256');
  for (const file of loadFunctions()) hash.update(`${file.name}\n${renderSql(file.sql, tables)}\n`);
  return hash.digest('hex');
}

/**
 * Applies every function file (CREATE OR REPLACE; triggers dropped and created again) in one
 * transaction, unless the database records that it already has exactly these files, or that a newer
 * release applied its own: the release and the hash of all the files are kept as the comment of the
 * migrations table, which the migrator owns. The caller holds the migrator's advisory lock. Returns
 * whether anything was applied.
 *
 * Skipping matters: dropping and creating a trigger takes an exclusive lock on its table, which would
 * stall every worker at each process's boot. And during a rolling deploy, a process of the previous
 * release booting after the new one must not put the old definitions back.
 */
export async function applyFunctions(client: pg.PoolClient, tables: Tables): Promise<boolean> {
  const version = releaseVersion();
  const comment = functionsComment(tables, version);
  const { rows } = await client.query<{ comment: string | null }>(
    `SELECT obj_description(to_regclass($1), 'pg_class') AS comment`,
    [tables.migrations],
  );
  const stored = rows[0]?.comment ?? null;
  if (stored === comment) return false;
  const storedVersion = stored ? /^durable-flow functions (\S+) sha256:/.exec(stored)?.[1] : undefined;
  if (storedVersion !== undefined && compareVersions(storedVersion, version) > 0) return false;
  await client.query('BEGIN');
  try {
    for (const file of loadFunctions()) {
      try {
        await client.query(renderSql(file.sql, tables));
      } catch (error) {
        throw new Error(`durable-flow: function file ${file.name}.sql failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    // The version comes from our own package.json; quoted all the same.
    await client.query(`COMMENT ON TABLE ${tables.migrations} IS '${comment.replaceAll("'", "''")}'`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
  return true;
}
