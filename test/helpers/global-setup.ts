import { DurableFlow } from '../../lib/index.js';
import { admin, templateName, urlFor } from './db.js';

/**
 * Builds the migrated template database every test file copies (CREATE DATABASE … TEMPLATE), and
 * drops test databases left behind by an interrupted earlier run.
 */
export default async function setup(): Promise<void> {
  const template = templateName();
  await admin(async (client) => {
    const { rows: stale } = await client.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE 'df\\_%' OR (datname LIKE 'durable\\_flow\\_tmpl\\_%' AND datname <> $1)`,
      [template],
    );
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
