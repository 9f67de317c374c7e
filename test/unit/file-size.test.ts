import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// A module a reader can hold in mind: every source file of lib/ has at most this many lines. Where one
// grows past it, split it by concept (as Execution became the replay ledger and the scheduler).
const MAX_LINES = 400;
const LIB = path.resolve(import.meta.dirname, '../../lib');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

describe('lib/ files', () => {
  it(`have at most ${MAX_LINES} lines each`, () => {
    const files = sources(LIB);
    expect(files.length).toBeGreaterThan(50);
    const long = files
      .map((file) => ({ file: path.relative(LIB, file), lines: fs.readFileSync(file, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > MAX_LINES)
      .map((f) => `${f.file}: ${f.lines} lines`);
    expect(long).toEqual([]);
  });
});
