import { DataTypes, Utils } from 'sequelize';
import type { ModelAttributeColumnOptions } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import { createEmptyDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';

interface Column {
  table_name: string;
  column_name: string;
  data_type: string;
  is_nullable: 'YES' | 'NO';
  column_default: string | null;
}

/** The Sequelize type a column of each Postgres type is modelled with. */
const TYPES: Record<string, string> = {
  bigint: 'BIGINT',
  integer: 'INTEGER',
  text: 'TEXT',
  jsonb: 'JSONB',
  boolean: 'BOOLEAN',
  'timestamp with time zone': 'DATE',
  xid8: 'TEXT', // read as its decimal text
};

type Default = { constant: unknown } | { sql: string } | 'now' | 'serial' | 'none';

/** What a column default asks of the model: a constant, `DataTypes.NOW`, autoIncrement, or the same SQL as a literal. */
function expectedDefault(columnDefault: string | null): Default {
  if (columnDefault === null) return 'none';
  if (columnDefault === 'now()') return 'now';
  if (columnDefault.startsWith('nextval(')) return 'serial';
  if (/^-?\d+$/.test(columnDefault)) return { constant: Number(columnDefault) };
  if (columnDefault === 'true' || columnDefault === 'false') return { constant: columnDefault === 'true' };
  const literal = /^'((?:[^']|'')*)'::(\w+)$/.exec(columnDefault);
  if (literal) {
    const value = literal[1]!.replace(/''/g, "'");
    return { constant: literal[2] === 'jsonb' ? JSON.parse(value) : value };
  }
  return { sql: columnDefault };
}

function modelDefault(attribute: ModelAttributeColumnOptions): Default {
  const value: unknown = attribute.defaultValue;
  if (value === undefined) return attribute.autoIncrement ? 'serial' : 'none';
  if (value === DataTypes.NOW || value instanceof DataTypes.NOW) return 'now';
  if (value instanceof Utils.Literal) return { sql: String(value.val) };
  return { constant: value };
}

describe('Sequelize models', () => {
  let db: TestDatabase;
  let flow: DurableFlow;
  let columns: Column[];
  beforeAll(async () => {
    db = await createEmptyDatabase('models');
    flow = new DurableFlow({ databaseUrl: db.url, logger: false });
    await flow.migrate();
    const { rows } = await flow.pool.query<Column>(
      `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name LIKE 'durable\\_flow\\_%' ORDER BY table_name, ordinal_position`,
    );
    columns = rows;
  });
  afterAll(async () => {
    await flow?.close();
    await db?.drop();
  });

  it('describe every column of every table of a freshly migrated database: name, type, nullability, default', () => {
    const models = Object.values(flow.models);
    const problems: string[] = [];
    const tables = new Set(columns.map((c) => c.table_name));
    const modelled = new Set(models.map((m) => m.tableName));
    for (const table of tables) if (!modelled.has(table)) problems.push(`table ${table} has no model`);
    for (const table of modelled) if (!tables.has(table)) problems.push(`model of ${table}: no such table`);

    for (const model of models) {
      const table = model.tableName;
      const attributes = new Map(
        Object.values(model.getAttributes() as Record<string, ModelAttributeColumnOptions>).map((a) => [a.field ?? '', a]),
      );
      const tableColumns = columns.filter((c) => c.table_name === table);
      for (const column of tableColumns) {
        const where = `${table}.${column.column_name}`;
        const attribute = attributes.get(column.column_name);
        if (!attribute) {
          problems.push(`${where}: missing from model ${model.name}`);
          continue;
        }
        const type = (attribute.type as { key?: string }).key;
        if (TYPES[column.data_type] !== type) problems.push(`${where}: ${column.data_type} modelled as ${type}`);
        const notNull = attribute.allowNull === false || attribute.primaryKey === true;
        if (notNull !== (column.is_nullable === 'NO')) {
          problems.push(`${where}: is_nullable ${column.is_nullable} but model allowNull ${String(!notNull)}`);
        }
        const expected = expectedDefault(column.column_default);
        const actual = modelDefault(attribute);
        if (JSON.stringify(expected) !== JSON.stringify(actual)) {
          problems.push(`${where}: default ${column.column_default} but model ${JSON.stringify(actual)}`);
        }
      }
      const names = new Set(tableColumns.map((c) => c.column_name));
      for (const field of attributes.keys()) {
        if (!names.has(field)) problems.push(`${table}.${field}: in model ${model.name}, not in the table`);
      }
    }
    expect(problems).toEqual([]);
    // The comparison saw the columns the models used to miss.
    expect(columns.map((c) => `${c.table_name}.${c.column_name}`)).toEqual(
      expect.arrayContaining([
        'durable_flow_workflow_runs.concurrency_limit',
        'durable_flow_workflow_runs.watched',
        'durable_flow_workflow_runs.resume_snapshot',
        'durable_flow_workflow_steps.exec_snapshot',
        'durable_flow_secrets.value',
        'durable_flow_workflow_runs.scheduled_for',
        'durable_flow_schedules.skipped',
      ]),
    );
  });

  it("allow exactly the values of the tables' CHECK constraints", async () => {
    const { rows } = await flow.pool.query<{ table: string; check: string }>(
      `SELECT conrelid::regclass::text AS table, pg_get_constraintdef(oid) AS check FROM pg_constraint
       WHERE contype = 'c' AND connamespace = 'public'::regnamespace ORDER BY 1`,
    );
    const fromTables = rows.map(({ table, check }) => {
      const list = /^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$/.exec(check);
      const single = /^CHECK \(\((\w+) = (\d+)\)\)$/.exec(check);
      if (list) return `${table}.${list[1]}: ${[...list[2]!.matchAll(/'([^']*)'::text/g)].map((m) => m[1]).join(', ')}`;
      if (single) return `${table}.${single[1]}: ${single[2]}`;
      return `${table}: unparsed ${check}`;
    });
    const fromModels = Object.values(flow.models)
      .flatMap((model) =>
        Object.values(model.getAttributes() as Record<string, ModelAttributeColumnOptions>)
          .filter((a) => a.validate?.isIn)
          .map((a) => `${model.tableName}.${a.field}: ${(a.validate!.isIn as unknown[][])[0]!.join(', ')}`),
      )
      .sort();
    expect(fromModels).toEqual(fromTables.sort());
    expect(fromModels).toHaveLength(12);
    const { WorkflowRun } = flow.models;
    await expect(WorkflowRun.build({ runId: 'r', workflowName: 'w', status: 'done' }).validate()).rejects.toThrow(
      'Validation isIn on status failed',
    );
  });

  it('leave to the database the defaults only it computes, and apply the constant ones', async () => {
    const { WorkflowEvent } = flow.models;
    const event = await WorkflowEvent.create({ name: 'modelled.event' });
    await event.reload();
    expect(event.get('payload')).toEqual({});
    expect(String(event.get('txid'))).toMatch(/^\d+$/);
    expect(event.get('occurredAt')).toBeInstanceOf(Date);
    const { rows } = await flow.pool.query(
      `SELECT txid::text, payload FROM durable_flow_workflow_events WHERE name = 'modelled.event'`,
    );
    expect(rows).toEqual([{ txid: event.get('txid'), payload: {} }]);
  });
});
