/**
 * The `directUrl` option is checked when the flow is made: a clear INVALID_OPTION naming it, never
 * echoing the value (a malformed connection string may still carry a password).
 */
import { describe, expect, it } from 'vitest';
import { resolveOptions, sessionConfig } from '../../lib/config.js';

const databaseUrl = 'postgres://app:secret@bouncer:6432/app';

describe('directUrl', () => {
  it.each([
    ['not a URL', 'host=db user=app password=secret', /not a URL/],
    ['a URL of a scheme taken from a host name', 'db-host:5432/app', /scheme `db-host:`/],
    ['a URL of another scheme', 'mysql://root:hunter2@db/app', /scheme `mysql:`/],
    ['a number', 5432, /got a number/],
    ['null', null, /got a null/],
  ])('refuses %s, naming the option and what it expects', (_what, value, detail) => {
    let error: unknown;
    try {
      resolveOptions({ databaseUrl, directUrl: value as string });
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'INVALID_OPTION', message: expect.stringMatching(/^Expected `directUrl` to be a Postgres connection string that reaches Postgres itself/) });
    expect((error as Error).message).toMatch(detail);
    expect((error as Error).message).not.toMatch(/secret|hunter2/);
  });

  it('is used for the session-bound connections when given, and databaseUrl otherwise', () => {
    const direct = 'postgresql://app:secret@db:5432/app';
    expect(sessionConfig(resolveOptions({ databaseUrl, directUrl: direct })).connectionString).toBe(direct);
    expect(sessionConfig(resolveOptions({ databaseUrl })).connectionString).toBe(databaseUrl);
    expect(resolveOptions({ databaseUrl }).directUrl).toBeUndefined();
  });
});
