/**
 * A run id as one URL path segment, and back. Percent-encoding is not enough: browsers and fetch()
 * resolve the dot segments `.` and `..` (also written `%2e`) before the request leaves, so
 * `/runs/..` would reach the run list instead of run "..". Those two ids travel with a leading `~`
 * (`/runs/~..`), and so does every id made of tildes before them (`~.` → `~~.`), which keeps the mapping
 * one-to-one; every other id is its plain percent-encoding, as before.
 */
const ESCAPED = /^~*\.\.?$/;

/** The percent-encoded path segment of a run id, safe from dot-segment resolution. */
export function runSegment(runId: string): string {
  return encodeURIComponent(ESCAPED.test(runId) ? `~${runId}` : runId);
}

/** The run id of a decoded path segment (the inverse of `runSegment`). */
export function runIdOfSegment(segment: string): string {
  return ESCAPED.test(segment) && segment.startsWith('~') ? segment.slice(1) : segment;
}
