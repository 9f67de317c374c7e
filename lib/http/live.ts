import type http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Server } from 'socket.io';
import type { Namespace } from 'socket.io';
import type { Duplex } from 'node:stream';
import type { Change } from '../changes/feed.js';
import { checkInteger } from '../config.js';
import type { ViewerBackend } from './backend.js';
import { checkAccess, sameOrigin } from './auth.js';
import type { AccessDecision } from './auth.js';
import type { ResolvedRouterOptions } from './options.js';
import type { LiveRules } from './viewers.js';

export interface LiveOptions {
  /**
   * socket.io path for clients of your own (when durable-flow creates the socket.io server). Viewer
   * pages connect under their own mount instead (`<mount>/socket.io`). Default `'/durable_flow/socket.io'`.
   */
  path?: string;
  /** socket.io namespace of the live channel. Default `'/durable_flow'`. */
  namespace?: string;
  /** How often, in ms, open sockets are checked again (revoked access is disconnected). Default 30000, at least 100. */
  recheckMs?: number;
}

export interface LiveHandle {
  io: Server;
  namespace: Namespace;
  path: string;
  close(): Promise<void>;
}

/**
 * The live channel as the viewer routers see it: where a page under a mount connects, and the
 * handler of that path's polling requests (none on the app's own socket.io server, whose path is its own).
 */
export interface LiveChannel {
  handle: LiveHandle;
  /** The socket path of pages mounted at `base` (the router's `req.baseUrl`). */
  pathFor(base: string): string;
  /** Serves an engine.io request the router took at `<mount>/socket.io/` (after its access check). */
  serve: ((req: IncomingMessage, res: ServerResponse) => void) | null;
}

/** Mount paths remembered for WebSocket upgrades: a parameterised mount (`/:tenant/flows`) must not grow the set forever. */
const MAX_MOUNTS = 1000;

// Any run id may be followed, spaces and all (run ids are any text of up to 255 characters).
const ROOM = /^(?:runs|workflows|events|run:[\s\S]{1,255})$/;
/** Rooms one socket may follow: a page follows one; without a cap a client could make the server hold any number. */
export const MAX_ROOMS_PER_SOCKET = 100;
const OTHER_ORIGIN = 'Forbidden: the live channel only accepts connections from the viewer’s own origin';

/**
 * Pushes committed changes to viewer pages over socket.io: a page joins its room (`runs`, `workflows`,
 * `events` or `run:<id>`) and reloads the affected fragment of itself when told. Messages carry the
 * change type and run id only; the browser never renders them, it refetches escaped HTML.
 *
 * Admission: a same-origin check, then the access rules `rulesFor` gives the handshake request (the
 * rules of the viewer mount whose page opened it, or attachLive's own). On a socket.io server of its
 * own this runs in engine.io's `allowRequest`, so a refused client never gets a session; on the app's
 * server (whose engine is the app's), at the namespace. Admitted sockets are checked again every
 * `recheckMs` against the rules they were admitted under (socket.io checks only at the handshake).
 *
 * Paths: a viewer page connects under its own mount (`/admin/flows/socket.io`), where the browser
 * sends the mount's basic credentials and the router's access check answers a missing one with the
 * challenge the browser answers. Polling requests there reach engine.io through the router
 * (`serve`); WebSocket upgrades never pass through Express, so the mounts pages were served from are
 * remembered and their upgrades handed to engine.io here. `options.path` stays open for clients of
 * the app's own. On the app's own socket.io server, pages use its path.
 */
export function attachLive(
  flow: ViewerBackend,
  target: http.Server | Server,
  rulesFor: (req: IncomingMessage) => LiveRules,
  options: LiveOptions = {},
): LiveChannel {
  const recheckMs = checkInteger('recheckMs', options.recheckMs ?? 30_000, 100, 3_600_000);
  const ownsServer = !(target instanceof Server);
  const admitted = new WeakMap<IncomingMessage, ResolvedRouterOptions>();

  /** Whether the request may open the live channel (the refusal says why not). */
  const admit = async (req: IncomingMessage): Promise<AccessDecision> => {
    try {
      if (!sameOrigin(req)) return { ok: false, status: 403, message: OTHER_ORIGIN };
      const rules = rulesFor(req);
      if ('refused' in rules) return { ok: false, status: 403, message: rules.refused };
      const decision = await checkAccess(req, rules);
      if (decision.ok) admitted.set(req, rules);
      return decision;
    } catch {
      // Whatever failed (a malformed URL, a throwing check), the handshake gets an answer: a refusal.
      return { ok: false, status: 403, message: 'Forbidden' };
    }
  };

  const io = ownsServer
    ? new Server(target, {
        path: options.path ?? '/durable_flow/socket.io',
        serveClient: false,
        allowRequest: (req, callback) => {
          void admit(req).then((decision) => {
            if (decision.ok) return callback(null, true);
            // A basic-auth refusal of a polling handshake is a 401 challenge, not engine.io's 403: a
            // browser holds the viewer's credentials for its mount's path only, and answers the
            // challenge with them (same realm) where it would not send them unasked.
            const res = (req as { res?: ServerResponse }).res;
            if (decision.status === 401 && res && !res.headersSent) {
              res.writeHead(401, { ...decision.headers, 'Content-Type': 'application/json' }).end(JSON.stringify({ code: 4, message: decision.message }));
            }
            callback(decision.message, false);
          });
        },
      })
    : target;
  const namespace = io.of(options.namespace ?? '/durable_flow');
  if (ownsServer && namespace.name !== '/') {
    // socket.io always serves its main namespace; on durable-flow's own server nothing lives there.
    io.of('/').use((_socket, next) => next(new Error(`Not found: this socket.io server only serves namespace ${namespace.name}`)));
  }
  namespace.use((socket, next) => {
    if (admitted.has(socket.request)) return next();
    void admit(socket.request).then((decision) => next(decision.ok ? undefined : new Error(decision.message)));
  });
  namespace.on('connection', (socket) => {
    // Leaving the namespace ends the admission: joining it again on the same connection is checked anew.
    socket.on('disconnect', () => admitted.delete(socket.request));
    socket.on('subscribe', (room: unknown, ack?: unknown) => {
      const reply = typeof ack === 'function' ? (ack as (answer: object) => void) : () => undefined;
      if (typeof room !== 'string' || !ROOM.test(room)) {
        reply({ error: 'Unknown room: subscribe to runs, workflows, events or run:<run id> (a run id is 1 to 255 characters)' });
      } else if (!socket.rooms.has(room) && socket.rooms.size > MAX_ROOMS_PER_SOCKET) {
        // socket.rooms also holds the socket's own id.
        reply({ error: `Too many rooms: a socket may follow at most ${MAX_ROOMS_PER_SOCKET} rooms` });
      } else {
        void socket.join(room);
        reply({ ok: true });
      }
    });
  });

  const checking = new WeakSet<object>();
  const recheck = setInterval(() => {
    for (const socket of namespace.sockets.values()) {
      // A slow authorize must not pile up checks of the same socket.
      if (checking.has(socket)) continue;
      const rules = admitted.get(socket.request);
      if (!rules) {
        socket.disconnect(true);
        continue;
      }
      checking.add(socket);
      void checkAccess(socket.request, rules)
        .then((decision) => decision.ok, () => false)
        .then((ok) => {
          checking.delete(socket);
          if (!ok) socket.disconnect(true);
        });
    }
  }, recheckMs);
  recheck.unref();

  const unsubscribe = flow.onChange((change: Change) => {
    const message = { type: change.type, runId: change.runId };
    if (change.runId) namespace.to(`run:${change.runId}`).emit('change', message);
    if (change.type.startsWith('workflow_run.')) namespace.to(['runs', 'workflows']).emit('change', message);
    if (change.type === 'workflow_event.created' || change.type.startsWith('workflow_wait.')) namespace.to('events').emit('change', message);
  });
  // Upgrades to a mount's socket path (polling there comes through the router, see serve).
  const mounts = new Set<string>();
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const pathname = (req.url ?? '').split('?')[0]!;
    // A mount at options.path itself (the default /durable_flow): engine.io's own listener takes it.
    if (mounts.has(pathname) && pathname !== `${io.path()}/`) io.engine.handleUpgrade(req, socket, head);
  };
  if (ownsServer) target.on('upgrade', onUpgrade);

  const handle: LiveHandle = {
    io,
    namespace,
    path: io.path(),
    async close() {
      clearInterval(recheck);
      unsubscribe();
      namespace.disconnectSockets(true);
      if (ownsServer) {
        target.off('upgrade', onUpgrade);
        await new Promise<void>((resolve) => io.close(() => resolve()));
      }
    },
  };
  return {
    handle,
    pathFor(base) {
      if (!ownsServer) return io.path();
      const path = `${base}/socket.io`;
      if (mounts.size < MAX_MOUNTS) mounts.add(`${path}/`);
      return path;
    },
    serve: ownsServer ? (req, res) => io.engine.handleRequest(req, res) : null,
  };
}
