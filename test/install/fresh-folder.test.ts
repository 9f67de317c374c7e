/**
 * What a newcomer does, outside the repository: pack the package (or install it from a git clone), make
 * a fresh `npm init` project, type the README's commands, save the README's Express example as
 * `server.js` and its `approve.js`, and run them against a fresh database. The code comes from
 * README.md itself, not from examples/: it is what a newcomer copies.
 *
 * Needs the npm registry (express, typescript; npm's cache serves them when it can).
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DurableFlow } from '../../lib/index.js';
import { createTestHarness } from '../../lib/testing/index.js';
import { createDatabase } from '../helpers/db.js';
import type { TestDatabase } from '../helpers/db.js';
import { eventually } from '../helpers/flow.js';

const exec = promisify(execFile);
const root = path.resolve(import.meta.dirname, '../..');
const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
// npm's cache first: the registry is asked only for what the cache lacks.
const NPM_FLAGS = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];

/**
 * The environment of the npm and node children: this process's, without the variables npm sets for
 * its scripts (`npm test` runs this file), which would point a nested npm at this repository, and
 * without vitest's NODE_ENV.
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig']);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_ENV' && (!key.startsWith('npm_') || keep.has(key))));
  return { ...env, ...extra };
}

async function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<string> {
  try {
    const { stdout } = await exec(command, args, { cwd, env: childEnv(env), maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) failed:\n${stdout ?? ''}\n${stderr ?? ''}`);
  }
}

/** The code of the README block right under `<!-- check: <check> -->` (the nth such block). */
function readmeBlock(check: string, nth = 0): string {
  const lines = readme.split('\n');
  const found: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== `<!-- check: ${check} -->` || !/^```\w*$/.test(lines[i + 1] ?? '')) continue;
    let end = i + 2;
    while (end < lines.length && lines[end] !== '```') end++;
    found.push(lines.slice(i + 2, end).join('\n'));
  }
  if (found[nth] === undefined) throw new Error(`README.md has no block ${nth} checked by ${check}`);
  return found[nth];
}

/** The README's shell lines, without comments. */
function commands(block: string): string[] {
  return block
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter(Boolean);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'durable-flow-install-'));
const databases: TestDatabase[] = [];
const children: ChildProcess[] = [];
let tarball = '';
let packed: string[] = [];
let app = '';

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const db of databases) await db.drop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

beforeAll(async () => {
  // `npm pack` of the working tree runs the `prepare` build first, as it does for a publish.
  const json = await run('npm', ['pack', '--json', '--pack-destination', tmp, ...NPM_FLAGS], root);
  const [info] = JSON.parse(json.slice(json.indexOf('['))) as [{ filename: string; files: { path: string }[] }];
  tarball = path.join(tmp, info.filename);
  packed = info.files.map((f) => f.path);

  // The README's install commands, in a fresh folder, with the tarball in place of the registry's package.
  const install = commands(readmeBlock('test/install/fresh-folder.test.ts', 0));
  expect(install[0]).toBe('mkdir my-app && cd my-app');
  app = path.join(tmp, 'my-app');
  fs.mkdirSync(app);
  for (const line of install.slice(1)) {
    const [command, ...args] = line.split(/\s+/) as [string, ...string[]];
    expect(command, line).toBe('npm');
    const replaced = args.map((arg) => (arg === 'durable-flow' ? tarball : arg));
    await run('npm', args[0] === 'install' ? [...replaced, ...NPM_FLAGS] : replaced, app);
  }
}, 240_000);

describe('a fresh npm project, as the README says', () => {
  it('the tarball holds the built JavaScript and what it serves, and nothing else: no source maps, no README template', () => {
    expect(packed).toEqual(expect.arrayContaining(['package.json', 'README.md', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/testing/index.js']));
    expect(packed).toEqual(expect.arrayContaining(fs.readdirSync(path.join(root, 'migrations')).map((f) => `migrations/${f}`)));
    // The SQL functions migrate() applies after the migrations (lib/db/functions), found from dist/lib.
    expect(packed).toEqual(expect.arrayContaining(fs.readdirSync(path.join(root, 'lib/db/functions')).map((f) => `lib/db/functions/${f}`)));
    expect(packed.some((f) => f.startsWith('views/') && f.endsWith('.ejs'))).toBe(true);
    for (const file of fs.readdirSync(path.join(root, 'public'), { recursive: true, encoding: 'utf8' })) {
      if (fs.statSync(path.join(root, 'public', file)).isFile()) expect(packed).toContain(`public/${file}`);
    }
    expect(packed.filter((f) => f.endsWith('.map'))).toEqual([]);
    expect(packed.filter((f) => /template/i.test(f))).toEqual([]);
    expect(packed).toContain('bin/durable-flow.js');
    const outside = packed.filter((f) => !/^(bin|dist\/lib|migrations|lib\/db\/functions|views|public)\//.test(f));
    expect(outside.sort()).toEqual(['LICENSE', 'README.md', 'package.json']);
  });

  it('package.json has "type": "module" and the installed package is the tarball', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8'));
    expect(manifest.type).toBe('module');
    expect(manifest.dependencies['durable-flow']).toMatch(/^file:.*\.tgz$/);
    expect(fs.existsSync(path.join(app, 'node_modules/durable-flow/dist/lib/index.js'))).toBe(true);
  });

  it('the README Express example: a signed event posted to it wakes the run, which completes', async () => {
    const db = await createDatabase('fresh');
    databases.push(db);
    fs.writeFileSync(path.join(app, 'server.js'), readmeBlock('examples/readme/express-app.js'));
    fs.writeFileSync(path.join(app, 'approve.js'), readmeBlock('examples/readme/approve.js'));
    // The README's environment: its `export` line, with this test's database and port.
    const exported = commands(readmeBlock('test/install/fresh-folder.test.ts', 1))[0]!;
    expect(exported).toMatch(/^export /);
    const env: Record<string, string> = Object.fromEntries(exported.slice('export '.length).split(/\s+/).map((a) => a.split('=', 2) as [string, string]));
    expect(Object.keys(env).sort()).toEqual(['DATABASE_URL', 'DURABLE_FLOW_EVENT_SECRET', 'VIEWER_PASSWORD']);
    Object.assign(env, { DATABASE_URL: db.url, PORT: '0' });

    const server = spawn(process.execPath, ['server.js'], { cwd: app, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(server);
    let output = '';
    server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
    const base = await eventually(() => {
      if (server.exitCode !== null) throw new Error(`server.js exited with ${server.exitCode}:\n${output}`);
      return /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    }, 60_000);

    const created = await fetch(`${base}/refunds`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"orderId":"o1"}' });
    expect(created.status).toBe(202);
    const { runId } = (await created.json()) as { runId: string };
    const flow = new DurableFlow({ databaseUrl: db.url });
    try {
      await eventually(async () => (await flow.getRun(runId))?.status === 'waiting', 30_000);

      const port = new URL(base).port;
      const sent = await run(process.execPath, ['approve.js', 'o1'], app, { ...env, PORT: port });
      expect(sent).toMatch(/^202 /);
      const done = await eventually(async () => {
        const found = await flow.getRun(runId);
        return found?.status === 'completed' ? found : undefined;
      }, 30_000);
      expect(done.output).toEqual({ id: 'pay_o1' });
      expect(output).not.toMatch(/error/i);
    } finally {
      await flow.close();
    }
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('TypeScript: strict, module nodenext, skipLibCheck false, on a file importing durable-flow and durable-flow/testing', async () => {
    // This repository's compiler; the types come from the app's node_modules only (@types/node as a
    // dependency of @types/pg, as any Node project has it).
    const tsc = path.join(root, 'node_modules/typescript/bin/tsc');
    expect(fs.existsSync(path.join(app, 'node_modules/@types/node/package.json'))).toBe(true);
    fs.writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', skipLibCheck: false, noEmit: true, typeRoots: ['./node_modules/@types'] }, files: ['check.ts'] }),
    );
    fs.writeFileSync(
      path.join(app, 'check.ts'),
      [
        "import express from 'express';",
        "import { DurableFlow, NonRetriableError, signatureHeader } from 'durable-flow';",
        "import type { RunHandle, WorkflowContext } from 'durable-flow';",
        "import { createTestHarness } from 'durable-flow/testing';",
        '',
        "const flow = new DurableFlow({ databaseUrl: 'postgres://localhost/app', leaseTtl: '30 seconds' });",
        "const greet = flow.workflow('greet', async ({ input, step }: WorkflowContext<{ name: string }>) => step.run('hello', () => `hi ${input.name}`));",
        "const handle: RunHandle<string> = await greet.start({ name: 'a' });",
        'const app = express();',
        "app.use('/durable_flow', flow.router({ allowUnauthenticated: true }));",
        'const harness = createTestHarness(flow);',
        '// The check can fail: tsc reports a wrong type, or an unused expect-error if the types were `any`.',
        '// @ts-expect-error a run of greet resolves with a string',
        "const wrong: RunHandle<number> = await greet.start({ name: 'b' });",
        "export { handle, harness, wrong, NonRetriableError, signatureHeader };",
        '',
      ].join('\n'),
    );
    await run(process.execPath, [tsc, '-p', '.'], app);
  });

  it('npx durable-flow check <module>: exits 1 on a run the code of the module would not replay, 2 on a usage error', async () => {
    const db = await createDatabase('fresh');
    databases.push(db);
    // A run in flight whose stored step the module's code renamed.
    const deployed = new DurableFlow({ databaseUrl: db.url, logger: false });
    try {
      await deployed.migrate();
      const greet = deployed.workflow('greet', async ({ step }) => {
        await step.run('hallo', () => 'hi');
        await step.waitForEvent('never');
      });
      const { runId } = await greet.start({});
      await createTestHarness(deployed).drain();
      expect((await deployed.getRun(runId))?.status).toBe('waiting');
    } finally {
      await deployed.close();
    }
    fs.writeFileSync(
      path.join(app, 'flow.js'),
      [
        "import { DurableFlow } from 'durable-flow';",
        'export const flow = new DurableFlow({ databaseUrl: process.env.DATABASE_URL });',
        "flow.workflow('greet', async ({ step }) => { await step.run('hello', () => 'hi'); await step.waitForEvent('never'); });",
        '',
      ].join('\n'),
    );
    const npx = (args: string[]) =>
      exec('npx', ['--no-install', 'durable-flow', ...args], { cwd: app, env: childEnv({ DATABASE_URL: db.url }) }).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
        (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code, stdout: error.stdout ?? '', stderr: error.stderr ?? '' }),
      );
    const diverging = await npx(['check', 'flow.js']);
    expect(diverging.stdout).toContain('1 of 1 run(s) in flight would not replay');
    expect(diverging.code).toBe(1);
    const usage = await npx(['check']);
    expect(usage.stderr).toContain('Usage: durable-flow check <module>');
    expect(usage.code).toBe(2);
  });

  it('CommonJS: require("durable-flow") works on this Node', async () => {
    const out = await run(process.execPath, ['-e', "const { DurableFlow } = require('durable-flow'); console.log(typeof DurableFlow)"], app);
    expect(out.trim()).toBe('function');
  });

  it('npm install git+file://<a clone> builds dist/ (the prepare script) and gives a working package', async () => {
    const clone = path.join(tmp, 'clone');
    await run('git', ['clone', '--quiet', root, clone], tmp);
    const other = path.join(tmp, 'from-git');
    fs.mkdirSync(other);
    await run('npm', ['init', '-y'], other);
    await run('npm', ['install', `git+file://${clone}`, ...NPM_FLAGS], other);
    const out = await run(process.execPath, ['--input-type=module', '-e', "const m = await import('durable-flow'); const t = await import('durable-flow/testing'); console.log(typeof m.DurableFlow, typeof t.createTestHarness)"], other);
    expect(out.trim()).toBe('function function');
    expect(fs.existsSync(path.join(other, 'node_modules/durable-flow/migrations/001_initial.sql'))).toBe(true);
  }, 300_000);
});
