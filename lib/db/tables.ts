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
  /** The operator tools (migration 007): paused workflows, bulk operations, the audit trail. */
  workflowPauses: string;
  operations: string;
  audit: string;
  /** Signals sent to runs (migration 009, lib/signals/). */
  signals: string;
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

/**
 * 'dflw' as a 32-bit integer: the first key of durable-flow's two-key advisory locks that are not
 * concurrency keys. Second keys: MIGRATOR_LOCK_KEY (session lock of migrate()) and the event-name keys
 * 0..EVENT_LOCK_KEYS-1 (durable_flow_event_lock_key: hashtext(name) & 63, transaction locks of
 * durable_flow_notify and of a suspension creating waits). See docs/ARCHITECTURE.md "Locks".
 */
export const LOCK_NAMESPACE = 0x64666c77;
/** Second key of the migrator's lock in LOCK_NAMESPACE. It is also event-name key 0 (see "Locks"). */
export const MIGRATOR_LOCK_KEY = 0;
/** How many event-name lock keys LOCK_NAMESPACE holds (hashtext(name) & 63 in durable_flow_event_lock_key). */
export const EVENT_LOCK_KEYS = 64;
/**
 * 'dfhx' as a 32-bit integer: the first key of the concurrency-key locks (second key hashtext(key)),
 * taken by durable_flow_claim and durable_flow_wake_next. The function files name it
 * {{concurrency_lock_namespace}}; migrations 001 and 002 spell it out as 1684433016.
 */
export const CONCURRENCY_LOCK_NAMESPACE = 0x64666878;
/**
 * 'dfhy' as a 32-bit integer (CONCURRENCY_LOCK_NAMESPACE + 1, so it sorts after it): the first key of the
 * throttle-key locks (second key hashtext(key)), taken by durable_flow_claim. {{throttle_lock_namespace}}.
 */
export const THROTTLE_LOCK_NAMESPACE = 0x64666879;

/** A migration or function file for this schema: its `{{schema}}`, `{{channel}}`, `{{concurrency_lock_namespace}}` and `{{throttle_lock_namespace}}` filled in. */
export function renderSql(sql: string, tables: Tables): string {
  return sql
    .replaceAll('{{schema}}', quoteIdent(tables.schema))
    .replaceAll('{{channel}}', tables.channelPrefix)
    .replaceAll('{{concurrency_lock_namespace}}', String(CONCURRENCY_LOCK_NAMESPACE))
    .replaceAll('{{throttle_lock_namespace}}', String(THROTTLE_LOCK_NAMESPACE));
}

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
    workflowPauses: `${s}.durable_flow_workflow_pauses`,
    operations: `${s}.durable_flow_operations`,
    audit: `${s}.durable_flow_audit`,
    signals: `${s}.durable_flow_signals`,
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
