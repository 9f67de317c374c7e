/**
 * Renders README.md from docs/README.template.md: every `@@path@@` becomes the `#region readme` part of that
 * file (dedented), or the whole file for a Markdown file. test/docs/readme.test.ts checks that README.md
 * is exactly this rendering, so its code blocks are the examples the tests run.
 * Usage: npm run readme
 */
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

function dedent(lines: string[]): string[] {
  const indents = lines.filter((l) => l.trim() !== '').map((l) => /^ */.exec(l)![0].length);
  const cut = indents.length === 0 ? 0 : Math.min(...indents);
  return lines.map((l) => l.slice(cut));
}

/** The README part of a file: its `// #region readme` … `// #endregion readme` lines, or all of it. */
export function excerpt(file: string): string {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  if (!/\.[jt]s$/.test(file)) return text.trimEnd();
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === '// #region readme');
  const end = lines.findIndex((l) => l.trim() === '// #endregion readme');
  if (start < 0 || end < start) throw new Error(`${file} has no "// #region readme" … "// #endregion readme" part`);
  return dedent(lines.slice(start + 1, end)).join('\n').trimEnd();
}

export function renderReadme(): string {
  const template = fs.readFileSync(path.join(root, 'docs', 'README.template.md'), 'utf8');
  return template.replace(/@@([\w./-]+)@@/g, (_, file: string) => excerpt(file === 'performance' ? 'docs/performance.md' : file));
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(import.meta.filename)) {
  fs.writeFileSync(path.join(root, 'README.md'), renderReadme());
  console.log('README.md rendered from docs/README.template.md');
}
