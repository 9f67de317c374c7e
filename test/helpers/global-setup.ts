import { DurableFlow } from '../../lib/index.js';
import { admin, createdAt, templateName, urlFor } from './db.js';

/** A test database older than this is a leftover of an interrupted run (no test file runs this long). */
const LEFTOVER_AGE_MS = 60 * 60 * 1000;

/**
 * Builds the migrated template database every test file copies (CREATE DATABASE … TEMPLATE), and
 * drops test databases left behind by an interrupted earlier run — only old ones, so that two test
 * runs on one server (the suite and the fault suite, or two developers) never drop each other's.
 */
export default async function setup(): Promise<void> {
  const template = templateName();
  await admin(async (client) => {
    const { rows: candidates } = await client.query<{ datname: string; connections: number; made_ms: number }>(
      // A template's age is its directory's: another checkout (a worktree with other migrations) may
      // be using its own template right now, so only templates untouched for an hour go. A database
      // dropped meanwhile by another run has no file: missing_ok (its row reads NULL, and is left alone).
      `SELECT datname, (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)::int AS connections,
              extract(epoch FROM (pg_stat_file('base/' || d.oid || '/PG_VERSION', true)).modification) * 1000 AS made_ms
         FROM pg_database d WHERE datname LIKE 'df\\_%' OR (datname LIKE 'durable\\_flow\\_tmpl\\_%' AND datname <> $1)`,
      [template],
    );
    const stale = candidates.filter(({ datname, connections, made_ms }) => {
      if (datname.startsWith('durable_flow_tmpl_')) return connections === 0 && Date.now() - Number(made_ms) > LEFTOVER_AGE_MS;
      const created = createdAt(datname);
      return created === null ? connections === 0 : Date.now() - created > LEFTOVER_AGE_MS;
    });
    for (const row of stale) await client.query(`DROP DATABASE IF EXISTS ${row.datname} WITH (FORCE)`);
    const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
    if (rows.length > 0) return;
    await client.query(`CREATE DATABASE ${template}`);
  });
  const flow = new DurableFlow({ databaseUrl: urlFor(template), logger: false });
  try {
    await flow.migrate();
  } finally {
    await flow.close();
  }
}
