import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const cache = new Map<string, string>();

/**
 * A folder shipped with the package (migrations/, views/, public/), found from wherever this file
 * runs: the sources (lib/) or the build (dist/lib/).
 */
export function packageDir(name: string, marker: string): string {
  const cached = cache.get(name);
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, name);
    if (fs.existsSync(path.join(candidate, marker))) {
      cache.set(name, candidate);
      return candidate;
    }
    dir = path.dirname(dir);
  }
  throw new Error(`durable-flow: cannot find its ${name}/ folder; is the package installed completely?`);
}
