/**
 * The viewer's action forms that carry JSON (start a run, send an event). A refused form is shown
 * again on its page with what was typed and what is wrong, rather than as a bare error page the user
 * must go back from (and lose their text).
 */
import { DurableFlowError } from '../errors.js';
import { HttpError, text } from './params.js';

/** The run page's operator forms that carry JSON (lib/http/operator-page.ts). */
export type OperatorForm = 'replay' | 'rerun-from' | 'resolve-wait' | 'complete-step';

/** Which form was refused, what it held, and why. */
export interface FormState {
  form: 'start-run' | 'send-event' | OperatorForm;
  /** The form's fields as typed (the CSRF token left out). */
  fields: Record<string, string>;
  message: string;
}

export class FormError extends HttpError {
  constructor(
    status: number,
    readonly state: FormState,
  ) {
    super(status, state.message);
  }
}

/** A form's string fields as typed; anything else (a repeated field) is left out. */
export function formFields(body: unknown, names: readonly string[]): Record<string, string> {
  const record = (body ?? {}) as Record<string, unknown>;
  const fields: Record<string, string> = {};
  for (const name of names) {
    const value = record[name];
    if (typeof value === 'string') fields[name] = value;
  }
  return fields;
}

/**
 * Parses a JSON field (empty: `{}`). The refusal names the field and where the JSON breaks, by line
 * and column (V8's message quotes the whole text instead, which the form already shows).
 */
function parseJsonField(text: string, what: string): { ok: true; value: unknown } | { ok: false; message: string } {
  if (text.trim() === '') return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    let reason = (error as Error).message.replace(/, ".*" is not valid JSON$/s, '').slice(0, 200);
    const position = /at position (\d+)/.exec(reason);
    if (position) {
      const before = text.slice(0, Number(position[1]));
      const line = before.split('\n').length;
      const column = before.length - before.lastIndexOf('\n');
      reason = reason.replace(/ in JSON at position \d+.*$/, '') + ` (line ${line}, column ${column})`;
    }
    return { ok: false, message: `The ${what} is not valid JSON: ${reason}` };
  }
}

/** A text field (as `text()` in params.ts reads it), refused as a FormError: the form comes back as typed. */
export function formText(form: FormState['form'], fields: Record<string, string>, name: string, what: string, max: number): string | null {
  try {
    return text(fields[name], what, max);
  } catch (error) {
    if (error instanceof HttpError) throw new FormError(error.status, { form, fields, message: error.message });
    throw error;
  }
}

/** A JSON field (empty: `{}`, at most 100,000 characters), refused as a FormError. */
export function formJson(form: FormState['form'], fields: Record<string, string>, name: string, what: string): unknown {
  const parsed = parseJsonField(formText(form, fields, name, what, 100_000) ?? '', what);
  if (!parsed.ok) throw new FormError(400, { form, fields, message: parsed.message });
  return parsed.value;
}

/**
 * Turns what the engine refuses about the values of a form (too large, not serialisable, an event id
 * used for another event) into a FormError, so the form comes back with its content.
 */
export function asFormError(error: unknown, form: FormState['form'], fields: Record<string, string>): unknown {
  if (!(error instanceof DurableFlowError)) return error;
  const status = error.code === 'INVALID_ARGUMENT' || error.code === 'NOT_SERIALIZABLE' ? 400 : error.code === 'EVENT_ID_CONFLICT' ? 409 : 0;
  return status === 0 ? error : new FormError(status, { form, fields, message: error.message });
}
