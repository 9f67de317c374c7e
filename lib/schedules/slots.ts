import type { ScheduleCatchUp, ScheduleOverlap, SkippedSlot } from '../types.js';
import type { CronSchedule } from './cron.js';

/**
 * What a firing decides for one schedule, as pure functions of its row and the database clock (the
 * firing itself, with its locks, is fire.ts).
 *
 * A due slot is *on time* when it is at most ON_TIME_MS old: a worker that polls every second or so
 * fires it late by that much, which is no downtime. Older due slots were *missed* (no process fired
 * while they passed, or the clock jumped: the harness's travel()) and fire per `catchUp`: `latest`
 * fires the newest missed slot when no slot is on time, `none` fires none, `all` the newest
 * CATCH_UP_LIMIT. Missed slots are not held back by `overlap`; on-time slots are.
 */
export const ON_TIME_MS = 60_000;
/** `catchUp: 'all'` fires at most this many missed slots at once; older ones are recorded as missed. */
export const CATCH_UP_LIMIT = 100;
/** The skipped-slot history a schedule keeps (newest first). */
export const SKIPPED_HISTORY = 100;
/**
 * Slots scanned one by one before the rest of a long gap is skipped over (counted approximately):
 * croner takes about 40 µs a slot, and the scan runs while the schedule's row is locked.
 */
const SCAN_LIMIT = 5_000;
/** Recent due slots kept while scanning: every on-time slot of a per-second cron, and the catch-up ones. */
const KEEP = CATCH_UP_LIMIT + 100;

export interface DueSlots {
  /** The newest due slots, oldest first. */
  recent: Date[];
  /** Older due slots, beyond `recent`: how many (approximate when `approximate`), the first and the last. */
  older: { count: number; first: Date; last: Date; approximate: boolean } | null;
  /** The first fire time after `now` (null: none), found by the scan anyway. */
  next: Date | null;
}

/** The fire times in [from, now], the newest KEEP kept, the rest counted. */
export function dueSlots(cron: CronSchedule, from: Date, now: Date): DueSlots {
  const recent: Date[] = [];
  let older = null as DueSlots['older'];
  let slot = cron.nextAfter(new Date(from.getTime() - 1));
  let scanned = 0;
  while (slot && slot.getTime() <= now.getTime()) {
    recent.push(slot);
    if (recent.length > KEEP) {
      const dropped = recent.shift()!;
      older = older ? { ...older, count: older.count + 1, last: dropped } : { count: 1, first: dropped, last: dropped, approximate: false };
    }
    if (++scanned % SCAN_LIMIT === 0 && older) {
      // A long gap of a fast cron: jump to the last stretch, assuming the same density of slots.
      const spanMs = Math.max(1, recent.at(-1)!.getTime() - older.first.getTime());
      const skipTo = now.getTime() - (spanMs * KEEP) / scanned;
      if (skipTo > slot.getTime()) {
        const skipped = Math.round(((skipTo - slot.getTime()) / spanMs) * scanned);
        older = { ...older, count: older.count + recent.length + skipped, last: new Date(skipTo), approximate: true };
        recent.length = 0;
        slot = cron.nextAfter(new Date(skipTo));
        continue;
      }
    }
    slot = cron.nextAfter(slot);
  }
  return { recent, older, next: slot };
}

export interface SlotPlan {
  /** Missed slots to start, not held back by overlap. */
  catchUp: Date[];
  /** On-time slots, for the overlap policy. */
  onTime: Date[];
  /** Slots that start no run because they were missed. */
  skipped: SkippedSlot[];
  /** The newest due slot (decided now), or null when none was due. */
  lastSlot: Date | null;
}

const missedEntry = (slots: Date[], older: DueSlots['older']): SkippedSlot | null => {
  const count = slots.length + (older?.count ?? 0);
  if (count === 0) return null;
  const first = older?.first ?? slots[0]!;
  const last = slots.at(-1) ?? older!.last;
  return count === 1 ? { slot: first.toISOString(), reason: 'missed' } : { slot: first.toISOString(), reason: 'missed', count, until: last.toISOString() };
};

/** Splits the due slots into on-time ones, missed ones to start per `catchUp`, and missed ones recorded. */
export function planSlots(due: DueSlots, catchUp: ScheduleCatchUp, now: Date): SlotPlan {
  const onTime = due.recent.filter((slot) => now.getTime() - slot.getTime() <= ON_TIME_MS);
  const late = due.recent.filter((slot) => now.getTime() - slot.getTime() > ON_TIME_MS);
  const fire = catchUp === 'all' ? late.slice(-CATCH_UP_LIMIT) : catchUp === 'latest' && onTime.length === 0 ? late.slice(-1) : [];
  const missed = late.slice(0, late.length - fire.length);
  const entry = missedEntry(missed, due.older);
  const lastSlot = due.recent.at(-1) ?? due.older?.last ?? null;
  return { catchUp: fire, onTime, skipped: entry ? [entry] : [], lastSlot };
}

export interface OverlapDecision {
  start: Date[];
  /** cancel_other: cancel the previous run first. */
  cancelPrevious: boolean;
  /** buffer_one: the slot waiting for the previous run (null: none). */
  buffered: Date | null;
  skipped: SkippedSlot[];
}

/**
 * Applies `overlap` to the on-time slots (oldest first), given whether the schedule's previous run
 * is still going and the slot buffer_one holds. A buffered slot starts first once the previous run
 * has finished.
 */
export function applyOverlap(
  policy: ScheduleOverlap,
  previous: { runId: string | null; active: boolean },
  buffered: Date | null,
  onTime: Date[],
): OverlapDecision {
  const decision: OverlapDecision = { start: [], cancelPrevious: false, buffered: policy === 'buffer_one' ? buffered : null, skipped: [] };
  const skip = (slot: Date) => decision.skipped.push({ slot: slot.toISOString(), reason: 'overlap', ...(previous.runId ? { runId: previous.runId } : {}) });
  let active = previous.active;
  if (policy === 'buffer_one' && buffered && !active) {
    decision.start.push(buffered);
    decision.buffered = null;
    active = true;
  }
  if (policy === 'cancel_other') {
    const newest = onTime.at(-1);
    onTime.slice(0, -1).forEach(skip);
    if (newest) {
      decision.cancelPrevious = active;
      decision.start.push(newest);
    }
    return decision;
  }
  for (const slot of onTime) {
    if (policy === 'allow' || !active) {
      decision.start.push(slot);
      active = true;
    } else if (policy === 'buffer_one' && decision.buffered === null) {
      decision.buffered = slot;
    } else {
      skip(slot);
    }
  }
  return decision;
}

/** Adds entries (newest first) to a skipped-slot history, keeping the newest SKIPPED_HISTORY. */
export function withSkipped(history: SkippedSlot[], entries: SkippedSlot[]): SkippedSlot[] {
  if (entries.length === 0) return history;
  const newest = [...entries].sort((a, b) => (a.slot < b.slot ? 1 : a.slot > b.slot ? -1 : 0));
  return [...newest, ...history].slice(0, SKIPPED_HISTORY);
}

/** The idempotency key of a slot's run: the runs table's unique index keeps a slot to one run. */
export function slotKey(schedule: string, slot: Date): string {
  return `schedule:${schedule}:${slot.toISOString()}`;
}
