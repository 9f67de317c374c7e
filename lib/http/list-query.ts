import type { RunFilter, TagFilter } from '../read/lists.js';

/** What a link of the run list changes in the current filter (null: leave the parameter out). */
export type ListQueryChange = Partial<Record<'status' | 'workflow' | 'q' | 'before' | 'children' | 'parent', string | null>> & { tags?: TagFilter[] };

/** `key:value`, as `?tag=` takes it. */
export function tagText(tag: TagFilter): string {
  return `${tag.key}:${tag.value}`;
}

/**
 * The query string (with its `?`, or '') of a run-list link: the current filter with `change` applied.
 * A page size given in the URL stays with the links; the default one is left out. Tags repeat `tag=`.
 */
export function listQuery(filter: RunFilter, pageSize: number, change: ListQueryChange = {}): string {
  const params = new URLSearchParams();
  const { tags = filter.tags, ...rest } = change;
  const merged: Record<string, string | null | undefined> = {
    status: filter.status,
    workflow: filter.workflow,
    q: filter.q,
    children: filter.scope.kind === 'all' ? '1' : null,
    parent: filter.scope.kind === 'children' ? filter.scope.parentRunId : null,
    limit: filter.limit === pageSize ? null : String(filter.limit),
    ...rest,
  };
  for (const [key, value] of Object.entries(merged)) if (value) params.set(key, value);
  for (const tag of tags) params.append('tag', tagText(tag));
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** A run's tags as shown, by key (jsonb keeps its keys shortest first, which reads as no order). */
export function tagEntries(tags: Record<string, string> | null | undefined): [string, string][] {
  return Object.entries(tags ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The filter with one more tag (none added twice). */
export function withTag(filter: RunFilter, tag: TagFilter): TagFilter[] {
  return filter.tags.some((t) => t.key === tag.key && t.value === tag.value) ? filter.tags : [...filter.tags, tag];
}
