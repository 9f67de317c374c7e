import type pg from 'pg';
import type { Sequelize } from 'sequelize';
import { toMilliseconds } from './duration.js';
import type { DurationInput } from './duration.js';
import { DurableFlowError } from './errors.js';
import { resolveDirectUrl } from './db/direct.js';
import { resolveRetention } from './retention/options.js';
import type { ResolvedRetention, RetentionOptions } from './retention/options.js';
import { MAX_TIMER_MS } from './timers.js';
import type { Backoff, BackoffOptions } from './types.js';

/** Where durable-flow reports what goes wrong outside a workflow (a lost connection, a failed heartbeat). */
export interface Logger {
  debug?(message: string, data?: Record<string, unknown>): void;
  info?(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

export interface DurableFlowOptions {
  /** Postgres connection string. Default: `process.env.DATABASE_URL`. */
  databaseUrl?: string;
  /** A streaming replica for the viewer's reads (its actions still write the primary, and show at once). Default: none. */
  viewerDatabaseUrl?: string;
  /**
   * A connection string to Postgres itself when `databaseUrl` goes through PgBouncer in transaction
   * mode: LISTEN, session advisory locks and migrations use it. Default: `databaseUrl`.
   */
  directUrl?: string;
  /** An existing Sequelize instance (Postgres dialect) to share the database and models with. */
  sequelize?: Sequelize;
  /** Postgres schema of durable-flow's tables. Default `'public'`. */
  schema?: string;
  /** Connections in durable-flow's own pool. Default 10. */
  poolSize?: number;
  /** How long a worker holds a run without renewing its lease. Default `'30 seconds'`. */
  leaseTtl?: DurationInput;
  /** How often workers renew their leases. Default: a third of `leaseTtl`. */
  heartbeatInterval?: DurationInput;
  /** Retries of a failing step after its first attempt. Default 3. */
  retries?: number;
  /** Delay between step attempts. Default: 1 s, doubling, ±20 % jitter, at most 1 hour. */
  backoff?: Backoff;
  /** Claims in a row that may end without the run stopping cleanly before it is failed. Default 5. */
  maxRecoveries?: number;
  /** Largest input, step result, output or event payload, in bytes of JSON. Default 4 MiB. */
  maxPayloadSize?: number;
  /** Where to report problems outside workflows; `false` for silence. Default: `console` (warn and error). */
  logger?: Logger | false;
  /** `application_name` of durable-flow's connections, as seen in `pg_stat_activity`. Default `'durable-flow'`. */
  applicationName?: string;
  /**
   * How long to wait for a connection of durable-flow's pool, or for Postgres to answer one query on
   * it, before the connection is given up as dead: a half-open connection would otherwise hang a
   * worker's commit forever. Heartbeats wait at most `leaseTtl`. Migrations are not limited.
   * Default `'1 minute'`; `false` for no limit.
   */
  queryTimeout?: DurationInput | false;
  /**
   * How long finished runs (with their steps, waits and logs) and events are kept; workers prune what is
   * older in the background. Default `{ completed: '30 days', cancelled: '30 days', failed: '90 days',
   * events: '7 days' }`; `false` keeps everything.
   */
  retention?: RetentionOptions | false;
  /**
   * This deployment's version, stored on every run it starts (`getRun().version`); workers of a
   * `versioning: 'pinned'` workflow continue only the runs of their version. At most 200 characters.
   * Default: `code-` and a hash of the registered workflows' code (their handlers and options), which
   * changes with any edit of a handler: pass `process.env.GIT_SHA` (or similar) for a stable one.
   */
  version?: string;
  /**
   * OpenTelemetry spans of each run execution and step attempt, in the trace of the start() that created
   * the run (see lib/tracing/), when `@opentelemetry/api` is installed. Default `true`; `false` traces nothing.
   */
  tracing?: boolean;
}

export interface ResolvedBackoff {
  initialMs: number;
  factor: number;
  maxMs: number;
  jitter: number;
  custom?: (attempt: number) => DurationInput;
}

export interface ResolvedOptions {
  databaseUrl: string | undefined;
  viewerDatabaseUrl: string | undefined;
  /** The `directUrl` option (undefined: `databaseUrl` is a session of its own). */
  directUrl: string | undefined;
  sequelize: Sequelize | undefined;
  schema: string;
  poolSize: number;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  retries: number;
  backoff: ResolvedBackoff;
  maxRecoveries: number;
  maxPayloadSize: number;
  logger: Logger;
  retention: ResolvedRetention;
  applicationName: string;
  /** 0: no limit. */
  queryTimeoutMs: number;
  /** The `version` option; undefined: the hash of the workflows' code (see lib/workflow/version.ts). */
  version: string | undefined;
  tracing: boolean;
}

export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value)}\` (string)`;
  if (typeof value === 'function') return '(function)';
  try {
    return `\`${JSON.stringify(value) ?? String(value)}\` (${value === null ? 'null' : typeof value})`;
  } catch {
    return `(${typeof value})`;
  }
}

export function invalidOption(name: string, value: unknown, expected: string): DurableFlowError {
  return new DurableFlowError('INVALID_OPTION', `Expected \`${name}\` to be ${expected}, got ${describeValue(value)}`);
}

export function checkInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidOption(name, value, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`);
  }
  return value;
}

/** A duration option in ms; INVALID_OPTION naming it otherwise. */
export function duration(name: string, value: unknown, max = Number.MAX_SAFE_INTEGER): number {
  let ms: number;
  try {
    ms = toMilliseconds(value, `\`${name}\``);
  } catch (error) {
    throw new DurableFlowError('INVALID_OPTION', (error as Error).message);
  }
  if (ms > max) throw invalidOption(name, value, `a duration of at most ${max} ms (about 24 days)`);
  return ms;
}

export function resolveBackoff(name: string, value: Backoff | undefined, base?: ResolvedBackoff): ResolvedBackoff {
  const fallback: ResolvedBackoff = base ?? { initialMs: 1000, factor: 2, maxMs: 3600_000, jitter: 0.2 };
  if (value === undefined) return fallback;
  if (typeof value === 'function') return { ...fallback, custom: value };
  if (typeof value !== 'object' || value === null) {
    throw invalidOption(name, value, 'an object like { initial: "1 second", factor: 2, max: "1 hour", jitter: 0.2 } or a function');
  }
  const options = value as BackoffOptions;
  const factor = options.factor ?? fallback.factor;
  if (typeof factor !== 'number' || !(factor >= 1)) throw invalidOption(`${name}.factor`, factor, 'a number >= 1');
  const jitter = options.jitter ?? fallback.jitter;
  if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) throw invalidOption(`${name}.jitter`, jitter, 'a number from 0 to 1');
  return {
    initialMs: options.initial === undefined ? fallback.initialMs : duration(`${name}.initial`, options.initial),
    factor,
    maxMs: options.max === undefined ? fallback.maxMs : duration(`${name}.max`, options.max),
    jitter,
  };
}

/** The delay after failed attempt `attempt` (1-based), in ms. */
export function backoffDelay(backoff: ResolvedBackoff, attempt: number, what: string): number {
  if (backoff.custom) {
    const value = backoff.custom(attempt);
    return toMilliseconds(value, `the delay ${what} returned for attempt ${attempt}`, { allowZero: true });
  }
  const base = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** (attempt - 1));
  const spread = base * backoff.jitter;
  return Math.max(0, Math.round(base - spread + Math.random() * 2 * spread));
}

const consoleLogger: Logger = {
  warn: (message, data) => console.warn(`[durable-flow] ${message}`, data ?? ''),
  error: (message, data) => console.error(`[durable-flow] ${message}`, data ?? ''),
};

const silentLogger: Logger = { warn: () => undefined, error: () => undefined };

export function resolveOptions(options: DurableFlowOptions = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalidOption('options', options, 'an object');
  }
  const databaseUrl = options.databaseUrl ?? (options.sequelize ? undefined : process.env.DATABASE_URL);
  if (options.databaseUrl !== undefined && typeof options.databaseUrl !== 'string') {
    throw invalidOption('databaseUrl', options.databaseUrl, 'a Postgres connection string');
  }
  if (!databaseUrl && !options.sequelize) {
    throw new DurableFlowError(
      'INVALID_OPTION',
      'durable-flow needs a database: pass `databaseUrl` (for example postgres://user:pass@localhost:5432/app), pass `sequelize` (an existing Sequelize instance), or set DATABASE_URL',
    );
  }
  if (options.sequelize) {
    // A JavaScript caller may pass anything here: ask only what every Sequelize instance answers.
    const candidate: { getDialect?: unknown } = options.sequelize;
    const dialect = typeof candidate.getDialect === 'function' ? String(candidate.getDialect()) : undefined;
    if (dialect !== 'postgres') {
      throw invalidOption('sequelize', `a ${dialect ?? 'non-Sequelize'} instance`, 'a Sequelize instance with the postgres dialect');
    }
  }
  const schema = options.schema ?? 'public';
  if (typeof schema !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
    throw invalidOption('schema', schema, 'a plain Postgres identifier (letters, digits, underscores)');
  }
  const leaseTtlMs = duration('leaseTtl', options.leaseTtl ?? '30 seconds', MAX_TIMER_MS);
  if (leaseTtlMs < 1000) throw invalidOption('leaseTtl', options.leaseTtl, 'at least 1 second');
  const heartbeatIntervalMs =
    options.heartbeatInterval === undefined
      ? Math.max(100, Math.floor(leaseTtlMs / 3))
      : duration('heartbeatInterval', options.heartbeatInterval, MAX_TIMER_MS);
  if (heartbeatIntervalMs >= leaseTtlMs) {
    throw invalidOption('heartbeatInterval', options.heartbeatInterval, `shorter than \`leaseTtl\` (${leaseTtlMs} ms)`);
  }
  const logger = options.logger === false ? silentLogger : (options.logger ?? consoleLogger);
  if (typeof logger.warn !== 'function' || typeof logger.error !== 'function') {
    throw invalidOption('logger', options.logger, 'an object with warn() and error() methods, or false');
  }
  return {
    databaseUrl,
    viewerDatabaseUrl: resolveViewerDatabaseUrl(options.viewerDatabaseUrl),
    directUrl: resolveDirectUrl(options.directUrl),
    sequelize: options.sequelize,
    schema,
    poolSize: checkInteger('poolSize', options.poolSize ?? 10, 2, 1000),
    leaseTtlMs,
    heartbeatIntervalMs,
    retries: checkInteger('retries', options.retries ?? 3, 0, 1000),
    backoff: resolveBackoff('backoff', options.backoff),
    maxRecoveries: checkInteger('maxRecoveries', options.maxRecoveries ?? 5, 0, 1000),
    maxPayloadSize: checkInteger('maxPayloadSize', options.maxPayloadSize ?? 4 * 1024 * 1024, 1024, 256 * 1024 * 1024),
    logger,
    applicationName: typeof options.applicationName === 'string' ? options.applicationName : 'durable-flow',
    queryTimeoutMs: options.queryTimeout === false ? 0 : duration('queryTimeout', options.queryTimeout ?? '1 minute', MAX_TIMER_MS),
    retention: resolveRetention(options.retention),
    version: resolveVersion(options.version),
    tracing: resolveTracing(options.tracing),
  };
}

/** The `viewerDatabaseUrl` option: a connection string, or undefined (the viewer reads the primary). */
function resolveViewerDatabaseUrl(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^postgres(ql)?:\/\//.test(value)) {
    throw invalidOption('viewerDatabaseUrl', value, 'a Postgres connection string of a streaming replica (postgres://user:pass@replica-host:5432/app), or undefined to read the primary');
  }
  return value;
}

function resolveVersion(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > 200) {
    throw invalidOption('version', value, 'a non-empty string of at most 200 characters (a release or commit id)');
  }
  return value;
}

function resolveTracing(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') throw invalidOption('tracing', value, 'true (spans when @opentelemetry/api is installed) or false (none)');
  return value;
}

/** A connection string with its password replaced, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable connection string)';
  }
}

/** The pg settings of the flow's session-bound connections (LISTEN, migrations, the prune lock): `directUrl`'s, or the flow's own. */
export function sessionConfig(options: ResolvedOptions): pg.ClientConfig {
  return options.directUrl ? { connectionString: options.directUrl, application_name: options.applicationName } : connectionConfig(options);
}

/** The pg connection settings of a flow: from `databaseUrl`, or from the Sequelize instance it was given. */
export function connectionConfig(options: ResolvedOptions): pg.ClientConfig {
  if (options.databaseUrl) {
    return { connectionString: options.databaseUrl, application_name: options.applicationName };
  }
  const config = options.sequelize!.config;
  // Sequelize passes dialectOptions to pg as they are (its types list only a few of them).
  const ssl = (config.dialectOptions as { ssl?: pg.ClientConfig['ssl'] } | undefined)?.ssl;
  return {
    host: config.host,
    port: config.port === undefined ? undefined : Number(config.port),
    database: config.database,
    user: config.username,
    password: config.password ?? undefined,
    ...(ssl === undefined ? {} : { ssl }),
    application_name: options.applicationName,
  };
}
