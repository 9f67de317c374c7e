import { DataTypes, Model } from 'sequelize';
import type { ModelStatic, Sequelize } from 'sequelize';

/**
 * Sequelize models of durable-flow's tables, for reading runs, steps, waits, events and logs with
 * the ORM the host app already uses. Writes that matter for correctness go through the engine
 * (leases and fencing live there), so treat these as read models.
 */
export interface DurableFlowModels {
  WorkflowRun: ModelStatic<Model>;
  WorkflowStep: ModelStatic<Model>;
  WorkflowEvent: ModelStatic<Model>;
  WorkflowWait: ModelStatic<Model>;
  WorkflowLog: ModelStatic<Model>;
}

const timestamps = {
  createdAt: { type: DataTypes.DATE, field: 'created_at' },
  updatedAt: { type: DataTypes.DATE, field: 'updated_at' },
};

export function defineModels(sequelize: Sequelize, schema: string): DurableFlowModels {
  const options = (tableName: string) => ({ tableName, schema, timestamps: true, underscored: true });
  const bigId = { type: DataTypes.BIGINT, primaryKey: true, autoIncrement: true };

  const WorkflowRun = sequelize.define(
    'DurableFlowWorkflowRun',
    {
      id: bigId,
      runId: { type: DataTypes.TEXT, allowNull: false, field: 'run_id' },
      workflowName: { type: DataTypes.TEXT, allowNull: false, field: 'workflow_name' },
      status: { type: DataTypes.TEXT, allowNull: false },
      queueName: { type: DataTypes.TEXT, field: 'queue_name' },
      priority: DataTypes.INTEGER,
      input: DataTypes.JSONB,
      output: DataTypes.JSONB,
      error: DataTypes.JSONB,
      idempotencyKey: { type: DataTypes.TEXT, field: 'idempotency_key' },
      parentRunId: { type: DataTypes.TEXT, field: 'parent_run_id' },
      parentStepName: { type: DataTypes.TEXT, field: 'parent_step_name' },
      concurrencyKey: { type: DataTypes.TEXT, field: 'concurrency_key' },
      wakeAt: { type: DataTypes.DATE, field: 'wake_at' },
      leaseOwner: { type: DataTypes.TEXT, field: 'lease_owner' },
      leaseEpoch: { type: DataTypes.BIGINT, field: 'lease_epoch' },
      leaseExpiresAt: { type: DataTypes.DATE, field: 'lease_expires_at' },
      claimCount: { type: DataTypes.INTEGER, field: 'claim_count' },
      attempts: DataTypes.INTEGER,
      startedAt: { type: DataTypes.DATE, field: 'started_at' },
      interruptedAt: { type: DataTypes.DATE, field: 'interrupted_at' },
      completedAt: { type: DataTypes.DATE, field: 'completed_at' },
      failedAt: { type: DataTypes.DATE, field: 'failed_at' },
      cancelledAt: { type: DataTypes.DATE, field: 'cancelled_at' },
      ...timestamps,
    },
    options('durable_flow_workflow_runs'),
  );

  const WorkflowStep = sequelize.define(
    'DurableFlowWorkflowStep',
    {
      id: bigId,
      workflowRunId: { type: DataTypes.BIGINT, allowNull: false, field: 'workflow_run_id' },
      name: { type: DataTypes.TEXT, allowNull: false },
      kind: DataTypes.TEXT,
      status: { type: DataTypes.TEXT, allowNull: false },
      attempts: DataTypes.INTEGER,
      position: DataTypes.INTEGER,
      result: DataTypes.JSONB,
      error: DataTypes.JSONB,
      cursor: DataTypes.JSONB,
      metadata: DataTypes.JSONB,
      startedAt: { type: DataTypes.DATE, field: 'started_at' },
      completedAt: { type: DataTypes.DATE, field: 'completed_at' },
      ...timestamps,
    },
    options('durable_flow_workflow_steps'),
  );

  const WorkflowEvent = sequelize.define(
    'DurableFlowWorkflowEvent',
    {
      id: bigId,
      eventId: { type: DataTypes.TEXT, field: 'event_id' },
      name: { type: DataTypes.TEXT, allowNull: false },
      payload: DataTypes.JSONB,
      source: DataTypes.TEXT,
      occurredAt: { type: DataTypes.DATE, field: 'occurred_at' },
      ...timestamps,
    },
    options('durable_flow_workflow_events'),
  );

  const WorkflowWait = sequelize.define(
    'DurableFlowWorkflowWait',
    {
      id: bigId,
      workflowRunId: { type: DataTypes.BIGINT, allowNull: false, field: 'workflow_run_id' },
      workflowStepId: { type: DataTypes.BIGINT, allowNull: false, field: 'workflow_step_id' },
      workflowEventId: { type: DataTypes.BIGINT, field: 'workflow_event_id' },
      eventName: { type: DataTypes.TEXT, allowNull: false, field: 'event_name' },
      status: { type: DataTypes.TEXT, allowNull: false },
      match: DataTypes.JSONB,
      allowPastEvents: { type: DataTypes.BOOLEAN, field: 'allow_past_events' },
      timeoutAt: { type: DataTypes.DATE, field: 'timeout_at' },
      ...timestamps,
    },
    options('durable_flow_workflow_waits'),
  );

  const WorkflowLog = sequelize.define(
    'DurableFlowWorkflowLog',
    {
      id: bigId,
      workflowRunId: { type: DataTypes.BIGINT, allowNull: false, field: 'workflow_run_id' },
      workflowStepId: { type: DataTypes.BIGINT, field: 'workflow_step_id' },
      key: DataTypes.TEXT,
      level: { type: DataTypes.TEXT, allowNull: false, validate: { isIn: [['debug', 'info', 'warn', 'error']] } },
      message: { type: DataTypes.TEXT, allowNull: false },
      data: DataTypes.JSONB,
      ...timestamps,
    },
    options('durable_flow_workflow_logs'),
  );

  WorkflowRun.hasMany(WorkflowStep, { foreignKey: 'workflowRunId', as: 'steps' });
  WorkflowRun.hasMany(WorkflowWait, { foreignKey: 'workflowRunId', as: 'waits' });
  WorkflowRun.hasMany(WorkflowLog, { foreignKey: 'workflowRunId', as: 'logs' });
  WorkflowStep.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowStep.hasMany(WorkflowLog, { foreignKey: 'workflowStepId', as: 'logs' });
  WorkflowWait.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowWait.belongsTo(WorkflowStep, { foreignKey: 'workflowStepId', as: 'step' });
  WorkflowWait.belongsTo(WorkflowEvent, { foreignKey: 'workflowEventId', as: 'event' });
  WorkflowEvent.hasMany(WorkflowWait, { foreignKey: 'workflowEventId', as: 'waits' });
  WorkflowLog.belongsTo(WorkflowRun, { foreignKey: 'workflowRunId', as: 'run' });
  WorkflowLog.belongsTo(WorkflowStep, { foreignKey: 'workflowStepId', as: 'step' });

  return { WorkflowRun, WorkflowStep, WorkflowEvent, WorkflowWait, WorkflowLog };
}
