/**
 * The names durable-flow's SQL refers to, resolved once per flow: the schema identifier is the only
 * thing ever interpolated into SQL text, quoted here; every value is a bound parameter.
 */
export interface Tables {
  schema: string;
  runs: string;
  steps: string;
  events: string;
  waits: string;
  logs: string;
  cancelTriggers: string;
  live: string;
  migrations: string;
  /** Random values durable-flow keeps for itself (the viewer's CSRF key). */
  secrets: string;
  /** NOTIFY channel names. */
  wakeChannel: string;
  changesChannel: string;
  channelPrefix: string;
  /** First key of every advisory lock durable-flow takes, so they never collide with the app's own. */
  lockNamespace: number;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** 'dflw' as a 32-bit integer. */
const LOCK_NAMESPACE = 0x64666c77;

export function tablesFor(schema: string): Tables {
  const s = quoteIdent(schema);
  const channelPrefix = schema === 'public' ? 'durable_flow_' : `durable_flow_${schema}_`;
  return {
    schema,
    runs: `${s}.durable_flow_workflow_runs`,
    steps: `${s}.durable_flow_workflow_steps`,
    events: `${s}.durable_flow_workflow_events`,
    waits: `${s}.durable_flow_workflow_waits`,
    logs: `${s}.durable_flow_workflow_logs`,
    cancelTriggers: `${s}.durable_flow_cancel_triggers`,
    live: `${s}.durable_flow_live`,
    migrations: `${s}.durable_flow_migrations`,
    secrets: `${s}.durable_flow_secrets`,
    wakeChannel: `${channelPrefix}wake`,
    changesChannel: `${channelPrefix}changes`,
    channelPrefix,
    lockNamespace: LOCK_NAMESPACE,
  };
}

/**
 * The flow's clock in SQL: the database clock plus the offset the test harness controls (always 0 in
 * production). `param` is the placeholder of the offset in milliseconds.
 *
 * statement_timestamp(), not clock_timestamp(): it is stable within a statement, so `wake_at <= now`
 * can use the wake_at index (a volatile function cannot be an index condition), and unlike now() it
 * is the start of this statement even inside a longer transaction.
 */
export function nowSql(param: string): string {
  return `(statement_timestamp() + ${param}::float8 * interval '1 millisecond')`;
}
