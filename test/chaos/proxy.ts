/**
 * A TCP proxy in front of Postgres for connection faults (reliability.md §4, "Toxiproxy-like faults
 * without Docker"). Point a connection string at it (`proxy.url(database)`) and, per connection:
 * - blackhole: nothing is forwarded either way any more and nothing is closed, so neither end learns
 *   anything (a half-open connection, as a dropped NAT entry or a partitioned network leaves it);
 * - partition: new connections are accepted but their start-up message never reaches the server
 *   (a connect that hangs), until `heal()`;
 * - reset: both sockets destroyed at once;
 * - cutAfterAnswer: a chosen statement reaches the server and is answered, the answer is withheld and
 *   the client's connection is reset instead (an ambiguous commit: committed, but the client saw an
 *   error).
 *
 * It reads the protocol's message framing (a start-up message, then a type byte and a length per
 * message) so it can tell connections apart by `application_name` and by the LISTEN they send, and
 * act at message boundaries. Plain TCP only: the connection strings it serves must not ask for SSL.
 */
import net from 'node:net';

export interface ProxiedConnection {
  readonly id: number;
  /** From the start-up message (undefined until it arrived). */
  applicationName: string | undefined;
  /** It sent a LISTEN. */
  listens: boolean;
  mode: 'forward' | 'blackhole' | 'closed';
}

type Filter = (connection: ProxiedConnection) => boolean;
const everyone: Filter = () => true;

/** Splits one direction of the stream into messages; `untyped` leading ones have no type byte. */
class Framer {
  #buffer: Buffer = Buffer.alloc(0);
  #untyped: number;

  constructor(untyped: number) {
    this.#untyped = untyped;
  }

  push(chunk: Buffer): Buffer[] {
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    const messages: Buffer[] = [];
    for (;;) {
      const header = this.#untyped > 0 ? 4 : 5;
      if (this.#buffer.length < header) break;
      const length = this.#buffer.readInt32BE(header - 4) + header - 4;
      if (this.#buffer.length < length) break;
      messages.push(this.#buffer.subarray(0, length));
      this.#buffer = this.#buffer.subarray(length);
      if (this.#untyped > 0) this.#untyped--;
    }
    return messages;
  }
}

/** `key\0value\0…` pairs of a start-up message. */
function startupParameters(message: Buffer): Map<string, string> {
  const parts = message.subarray(8).toString('utf8').split('\0');
  const parameters = new Map<string, string>();
  for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i]) parameters.set(parts[i]!, parts[i + 1]!);
  return parameters;
}

interface Cut {
  match: (type: string, message: Buffer) => boolean;
  left: number;
  /** Bind messages whose answers were withheld, in order. */
  cut: Buffer[];
}

export interface PgProxy {
  port: number;
  url(database: string): string;
  connections(filter?: Filter): ProxiedConnection[];
  /** Blackholes the open connections that match; returns how many. */
  blackhole(filter?: Filter): number;
  /** New connections that match are blackholed at start-up until `heal()`. */
  partition(filter?: Filter): void;
  heal(): void;
  /** Destroys both sockets of the open connections that match; returns how many. */
  reset(filter?: Filter): number;
  /**
   * The next `times` client messages for which `match` holds (and the rest of their statement, up to
   * its Sync) are forwarded; the server's answer is withheld and, once it is complete (ReadyForQuery),
   * the client's socket is destroyed. Returns the list of the matched messages, filled as cuts happen.
   */
  cutAfterAnswer(match: (type: string, message: Buffer) => boolean, times: number): Buffer[];
  close(): Promise<void>;
}

export async function startProxy(target: { host: string; port: number }): Promise<PgProxy> {
  const open = new Map<ProxiedConnection, { client: net.Socket; server: net.Socket }>();
  const cuts: Cut[] = [];
  let partitioned: Filter | undefined;
  let nextId = 1;

  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const connection: ProxiedConnection = { id: nextId++, applicationName: undefined, listens: false, mode: 'forward' };
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    open.set(connection, { client, server: upstream });
    const fromClient = new Framer(1);
    const fromServer = new Framer(0);
    // A cut in progress: 'armed' after the matched message (forward up to the Sync), then
    // 'withholding' (drop the server's answer until its ReadyForQuery, then reset the client).
    let cutState: { cut: Cut; phase: 'armed' | 'withholding' } | undefined;

    const close = () => {
      if (connection.mode === 'closed') return;
      connection.mode = 'closed';
      open.delete(connection);
      client.destroy();
      upstream.destroy();
    };

    client.on('data', (chunk: Buffer) => {
      for (const message of fromClient.push(chunk)) {
        if (connection.mode !== 'forward') continue;
        if (connection.applicationName === undefined) {
          // The start-up message (or a cancel request, which has no parameters).
          connection.applicationName = startupParameters(message).get('application_name') ?? '';
          if (partitioned?.(connection)) {
            connection.mode = 'blackhole';
            continue;
          }
          upstream.write(message);
          continue;
        }
        const type = String.fromCharCode(message[0]!);
        // A simple query starting with LISTEN (pg-listen quotes a channel name only when it needs it).
        if (type === 'Q' && /^\s*LISTEN\s/i.test(message.subarray(5).toString())) connection.listens = true;
        if (!cutState) {
          const cut = cuts.find((c) => c.left > 0 && c.match(type, message));
          if (cut) {
            cut.left--;
            cut.cut.push(Buffer.from(message));
            cutState = { cut, phase: 'armed' };
          }
        }
        upstream.write(message);
        if (cutState?.phase === 'armed' && type === 'S') cutState.phase = 'withholding';
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      for (const message of fromServer.push(chunk)) {
        if (connection.mode !== 'forward') continue;
        if (cutState) {
          if (cutState.phase === 'withholding' && message[0] === 'Z'.charCodeAt(0)) {
            // The statement is done (committed or not) and the client never hears of it.
            client.destroy();
            upstream.end();
            connection.mode = 'closed';
            open.delete(connection);
          }
          continue;
        }
        client.write(message);
      }
    });
    // An end closes the other side only while forwarding: through a blackhole a FIN is lost too.
    client.on('end', () => {
      if (connection.mode === 'forward') upstream.end();
    });
    upstream.on('end', () => {
      if (connection.mode === 'forward') client.end();
    });
    client.on('close', () => {
      if (connection.mode === 'forward') close();
    });
    upstream.on('close', () => {
      if (connection.mode === 'forward') close();
    });
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  const matching = (filter: Filter) => [...open.keys()].filter((c) => c.mode === 'forward' && filter(c));
  return {
    port,
    url: (database) => `postgres://postgres@127.0.0.1:${port}/${database}`,
    connections: (filter = everyone) => [...open.keys()].filter(filter),
    blackhole(filter = everyone) {
      const hit = matching(filter);
      for (const c of hit) c.mode = 'blackhole';
      return hit.length;
    },
    partition(filter = everyone) {
      partitioned = filter;
    },
    heal() {
      partitioned = undefined;
    },
    reset(filter = everyone) {
      const hit = matching(filter);
      for (const c of hit) {
        const sockets = open.get(c)!;
        c.mode = 'closed';
        open.delete(c);
        sockets.client.destroy();
        sockets.server.destroy();
      }
      return hit.length;
    },
    cutAfterAnswer(match, times) {
      const cut: Cut = { match, left: times, cut: [] };
      cuts.push(cut);
      return cut.cut;
    },
    async close() {
      for (const [c, sockets] of open) {
        c.mode = 'closed';
        sockets.client.destroy();
        sockets.server.destroy();
      }
      open.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
