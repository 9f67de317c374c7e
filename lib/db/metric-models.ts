import { DataTypes } from 'sequelize';
import type { Model, ModelAttributes, ModelStatic } from 'sequelize';

/** The models of the metrics tables (migration 016), for lib/db/models.ts. */
export interface MetricModels {
  /** Runs by workflow and status, in per-connection shards (their sum is the count). */
  RunCount: ModelStatic<Model>;
  /** Runs begun, completed, failed and cancelled per minute and workflow. */
  MetricMinute: ModelStatic<Model>;
  /** Histogram buckets (step durations, event → resume, queue lag) per minute and workflow. */
  MetricSample: ModelStatic<Model>;
}

export const METRIC_KINDS = ['step', 'resume', 'lag'];

type Define = (name: string, attributes: ModelAttributes, table: string, stamps: 'none') => ModelStatic<Model>;

export function defineMetricModels(define: Define): MetricModels {
  const key = (type: DataTypes.DataType, field: string) => ({ type, primaryKey: true, field });
  const total = (field: string, defaultValue?: number) => ({ type: DataTypes.BIGINT, allowNull: false, field, ...(defaultValue === undefined ? {} : { defaultValue }) });
  return {
    RunCount: define(
      'RunCount',
      { workflowName: key(DataTypes.TEXT, 'workflow_name'), status: key(DataTypes.TEXT, 'status'), shard: key(DataTypes.INTEGER, 'shard'), runs: total('runs'), children: total('children', 0) },
      'durable_flow_run_counts',
      'none',
    ),
    MetricMinute: define(
      'MetricMinute',
      {
        minute: key(DataTypes.DATE, 'minute'),
        workflowName: key(DataTypes.TEXT, 'workflow_name'),
        shard: key(DataTypes.INTEGER, 'shard'),
        started: total('started', 0),
        completed: total('completed', 0),
        failed: total('failed', 0),
        cancelled: total('cancelled', 0),
      },
      'durable_flow_metric_minutes',
      'none',
    ),
    MetricSample: define(
      'MetricSample',
      {
        minute: key(DataTypes.DATE, 'minute'),
        workflowName: key(DataTypes.TEXT, 'workflow_name'),
        kind: { ...key(DataTypes.TEXT, 'kind'), validate: { isIn: [METRIC_KINDS] } },
        bucket: key(DataTypes.INTEGER, 'bucket'),
        shard: key(DataTypes.INTEGER, 'shard'),
        samples: total('samples', 0),
        sumUs: total('sum_us', 0),
      },
      'durable_flow_metric_samples',
      'none',
    ),
  };
}
