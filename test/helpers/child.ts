import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '../..');

export interface ChildWorker {
  child: ChildProcess;
  pid: number;
  output: string[];
  /** Resolves with the first output line matching `pattern` (already seen or yet to come). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when the process has exited, with its signal or code. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** Starts a TypeScript fixture in a child process (a real process: SIGKILL really kills it). */
export function spawnFixture(fixture: string, env: Record<string, string>): ChildWorker {
  return spawnNode(['--import', 'tsx', path.join(root, 'test/fixtures', fixture)], env, fixture);
}

/** Starts `node <args>` as a child process (for a fixture bundled ahead, which starts faster than through tsx). */
export function spawnNode(args: string[], env: Record<string, string>, fixture = args[args.length - 1]!): ChildWorker {
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const output: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let index: number;
    while ((index = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, index);
      buffer = buffer.slice(index + 1);
      output.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.pattern.test(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return {
    child,
    pid: child.pid!,
    output,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      const seen = output.find((line) => pattern.test(line));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`Child ${fixture} printed no line matching ${pattern} within ${timeoutMs} ms.\nstdout:\n${output.join('\n')}\nstderr:\n${stderr}`));
        }, timeoutMs);
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`Child ${fixture} exited (${code ?? signal}) before printing ${pattern}.\nstdout:\n${output.join('\n')}\nstderr:\n${stderr}`));
        });
      });
    },
  };
}

/** Kills every child a test started and left running. */
export function killAllChildren(): void {
  for (const child of children) {
    child.kill('SIGKILL');
  }
}
