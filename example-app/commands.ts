/**
 * The shell commands the home page shows: a signed event for durable-flow's ingest endpoint and a
 * provider-style webhook, each signed the way its receiver checks (`t=<unix seconds>,v1=<hex
 * HMAC-SHA256 of "<t>.<raw body>">`, five minutes of tolerance). The signature is computed when the
 * command runs (openssl), so a pasted command never carries an expired one.
 */

/** `text` as one single-quoted shell word. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

export interface SignedCommand {
  /** The URL the command posts to. */
  url: string;
  /** The header that carries the signature. */
  header: string;
  /** The secret as the command names it: the value itself, or the environment variable holding it. */
  secret: { value: string } | { variable: string };
  body: string;
}

/** A bash command that signs `body` with the secret and POSTs it (needs curl and openssl). */
export function signedCurl({ url, header, secret, body }: SignedCommand): string {
  return [
    `SECRET=${'value' in secret ? shellQuote(secret.value) : `"$${secret.variable}"`}`,
    `BODY=${shellQuote(body)}`,
    'T=$(date +%s)',
    `SIG=$(printf '%s' "$T.$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.* //')`,
    `curl -sS -X POST ${shellQuote(url)} -H 'Content-Type: application/json' \\`,
    `  -H "${header}: t=$T,v1=$SIG" -d "$BODY"`,
  ].join('\n');
}
