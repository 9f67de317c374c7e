import type { Sequelize } from 'sequelize';
import type { FeedRecords } from '../changes/feed.js';
import { defineModels } from '../db/models.js';
import type { Tables } from '../db/tables.js';
import type { OperatorContext } from '../operator/context.js';
import { MetricsReads } from '../metrics/reads.js';
import { Operator } from '../operator/runs.js';
import { readDb } from './db.js';
import { Reader } from './reader.js';
import { ReadRouting } from './replica.js';
import { changedRecords, keepLive } from './records.js';

/** The read side and the cold path's writes: one Sequelize instance (the viewer's connections), one set of models. */
export interface ViewerSide {
  reader: Reader;
  operator: Operator;
  /** What the operator tools (lib/operator/) work with, on these connections. */
  operatorContext: OperatorContext;
  feed: FeedRecords;
  /** The metrics' reads (lib/metrics/). */
  metrics: MetricsReads;
}

/**
 * `replica`: the Sequelize instance of `viewerDatabaseUrl` (null without it). The reader reads through
 * the routing (read/replica.ts): on the replica in the viewer's requests and the feed's read-backs when
 * it is fresh enough, on the primary otherwise. Every write (the operator, `live_until`, the CSRF key)
 * goes to the primary.
 */
export function viewerSide(sequelize: Sequelize, replica: Sequelize | null, schema: string, tables: Tables, deps: Omit<OperatorContext, 'db'>): ViewerSide {
  const db = readDb(sequelize, defineModels(sequelize, schema), tables);
  const routing = new ReadRouting(db, replica && readDb(replica, defineModels(replica, schema), tables), deps.logger);
  const operatorContext: OperatorContext = { ...deps, db };
  return {
    reader: new Reader(routing.routed, { primary: db, routing }),
    operator: new Operator(operatorContext),
    operatorContext,
    metrics: new MetricsReads(db),
    feed: { changedRecords: (ids) => routing.fresh(() => changedRecords(routing.routed, ids)), keepLive: (windowMs) => keepLive(db, windowMs) },
  };
}
