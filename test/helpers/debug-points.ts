import fs from 'node:fs';
import path from 'node:path';

/** Every `debugPoint('NAME'` in lib/, read from the source: a new point is covered the day it is added. */
export function debugPoints(): string[] {
  const points = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (file.endsWith('.ts')) for (const match of fs.readFileSync(file, 'utf8').matchAll(/debugPoint\(\s*'([A-Z_]+)'/g)) points.add(match[1]!);
    }
  };
  walk(path.resolve(import.meta.dirname, '../../lib'));
  return [...points].sort();
}
