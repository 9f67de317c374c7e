import { QueryTypes } from 'sequelize';
import type { Sequelize, Transaction } from 'sequelize';
import type { DurableFlowModels } from '../db/models.js';
import type { Tables } from '../db/tables.js';

/**
 * The read side's handle on the database: the models (every column of every table, checked against the
 * migrated schema by test/integration/models.test.ts) on the viewer's Sequelize instance, the table
 * names, and `select` for the few statements that say in SQL what the models cannot (bounded JSON
 * previews, the search, the joins of a timeline). Every value is bound.
 */
export interface ReadDb {
  readonly sequelize: Sequelize;
  readonly models: DurableFlowModels;
  readonly tables: Tables;
  select<T extends object = Record<string, unknown>>(sql: string, bind?: unknown[], transaction?: Transaction): Promise<T[]>;
}

export function readDb(sequelize: Sequelize, models: DurableFlowModels, tables: Tables): ReadDb {
  return {
    sequelize,
    models,
    tables,
    select: <T extends object>(sql: string, bind: unknown[] = [], transaction?: Transaction) =>
      sequelize.query<T>(sql, { type: QueryTypes.SELECT, bind, raw: true, ...(transaction ? { transaction } : {}) }),
  };
}

/** The Postgres error code of an error thrown through Sequelize (it wraps the driver's), if any. */
export function pgCode(error: unknown): string | undefined {
  const { code, parent } = (error ?? {}) as { code?: unknown; parent?: { code?: unknown } };
  const found = parent?.code ?? code;
  return typeof found === 'string' ? found : undefined;
}
