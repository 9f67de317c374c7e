import type http from 'node:http';
import { Server } from 'socket.io';
import type { Namespace } from 'socket.io';
import type { Change } from '../changes/feed.js';
import type { DurableFlow } from '../flow.js';
import { checkAccess, sameOrigin } from './auth.js';
import type { ResolvedRouterOptions } from './options.js';

export interface LiveOptions {
  /** socket.io path (when durable-flow creates the socket.io server). Default `'/durable_flow/socket.io'`. */
  path?: string;
  /** socket.io namespace of the live channel. Default `'/durable_flow'`. */
  namespace?: string;
  /** How often connected browsers are checked again (a revoked session is disconnected). Default 30 s. */
  recheckMs?: number;
}

export interface LiveHandle {
  io: Server;
  namespace: Namespace;
  path: string;
  close(): Promise<void>;
}

// Any run id may be followed, spaces and all (run ids are any text of up to 255 characters).
const ROOM = /^(?:runs|workflows|events|run:[\s\S]{1,255})$/;

/**
 * Pushes committed changes to viewer pages over socket.io: a page joins its room (`runs`, `workflows`,
 * `events` or `run:<id>`) and reloads the affected fragment of itself when told. Messages carry the
 * change type and run id only; the browser never renders them, it refetches escaped HTML.
 * The handshake goes through the viewer's access check and a same-origin check.
 */
export function attachLive(
  flow: DurableFlow,
  target: http.Server | Server,
  access: ResolvedRouterOptions,
  options: LiveOptions = {},
): LiveHandle {
  const ownsServer = !(target instanceof Server);
  const path = options.path ?? '/durable_flow/socket.io';
  const io = target instanceof Server ? target : new Server(target, { path, serveClient: false });
  const namespace = io.of(options.namespace ?? '/durable_flow');
  namespace.use((socket, next) => {
    if (!sameOrigin(socket.request)) {
      next(new Error('Forbidden: the live channel only accepts connections from the viewer’s own origin'));
      return;
    }
    checkAccess(socket.request, access).then(
      (decision) => (decision.ok ? next() : next(new Error(decision.message))),
      () => next(new Error('Forbidden')),
    );
  });
  namespace.on('connection', (socket) => {
    socket.on('subscribe', (room: unknown) => {
      if (typeof room === 'string' && ROOM.test(room)) void socket.join(room);
    });
  });
  const recheck = setInterval(() => {
    for (const socket of namespace.sockets.values()) {
      void checkAccess(socket.request, access).then((decision) => {
        if (!decision.ok) socket.disconnect(true);
      });
    }
  }, options.recheckMs ?? 30_000);
  recheck.unref();
  const unsubscribe = flow.onChange((change: Change) => {
    const message = { type: change.type, runId: change.runId };
    if (change.runId) namespace.to(`run:${change.runId}`).emit('change', message);
    if (change.type.startsWith('workflow_run.')) namespace.to(['runs', 'workflows']).emit('change', message);
    if (change.type === 'workflow_event.created' || change.type.startsWith('workflow_wait.')) namespace.to('events').emit('change', message);
  });
  return {
    io,
    namespace,
    path: ownsServer ? path : (io as unknown as { _path: string })._path,
    async close() {
      clearInterval(recheck);
      unsubscribe();
      namespace.disconnectSockets(true);
      if (ownsServer) await new Promise<void>((resolve) => io.close(() => resolve()));
    },
  };
}
