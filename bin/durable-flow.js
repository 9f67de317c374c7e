#!/usr/bin/env node
// The durable-flow command line. Plain JavaScript: it imports only the module it is given (which
// imports durable-flow itself), so it runs from an installed package without a build step of its own.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const USAGE = `Usage: durable-flow check <module>

  Replays the stored history of every run in flight against the workflows the module registers,
  without running a step or writing anything, and prints each run that would not replay.
  <module>: a JavaScript module whose default export (or export \`flow\`) is the DurableFlow.

Exit code: 0 every run replays, 1 some run would not, 2 usage error or the check could not run.`;

function usage(message) {
  if (message) console.error(`durable-flow: ${message}\n`);
  console.error(USAGE);
  return 2;
}

function isFlow(value) {
  return typeof value === 'object' && value !== null && typeof value.check === 'function' && typeof value.close === 'function';
}

async function check(modulePath) {
  let module;
  try {
    module = await import(pathToFileURL(path.resolve(modulePath)).href);
  } catch (error) {
    return usage(`could not import ${modulePath}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const flow = [module.default, module.flow].find(isFlow);
  if (!flow) return usage(`${modulePath} exports no DurableFlow: export it as the default export or as \`flow\``);
  try {
    const results = await flow.check();
    const diverging = results.filter((result) => !result.ok);
    for (const { runId, workflow, divergence } of diverging) {
      const where = divergence?.position === null || divergence?.position === undefined ? '' : ` at position ${divergence.position}`;
      console.log(`${runId} (${workflow}) would not replay${where}: ${divergence?.reason ?? 'unknown'}`);
    }
    const workflows = new Set(diverging.map((result) => result.workflow));
    console.log(
      diverging.length === 0
        ? `durable-flow check: all ${results.length} run(s) in flight replay under this code`
        : `durable-flow check: ${diverging.length} of ${results.length} run(s) in flight would not replay (workflows: ${[...workflows].sort().join(', ')})`,
    );
    return diverging.length === 0 ? 0 : 1;
  } catch (error) {
    console.error(`durable-flow: the check failed: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  } finally {
    await flow.close().catch(() => undefined);
  }
}

const [command, modulePath, ...rest] = process.argv.slice(2);
let code;
if (command === '--help' || command === '-h') code = usage();
else if (command !== 'check') code = usage(command === undefined ? 'no command given' : `unknown command "${command}"`);
else if (modulePath === undefined || rest.length > 0) code = usage('check takes exactly one module');
else code = await check(modulePath);
// The module may have opened servers or timers of its own: exit rather than wait for them.
process.exit(code);
