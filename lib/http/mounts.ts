import type http from 'node:http';
import type { Router } from 'express';
import type { Server as SocketIOServer } from 'socket.io';
import type { ViewerBackend, ViewerReads } from './backend.js';
import { attachLive } from './live.js';
import type { LiveChannel, LiveHandle, LiveOptions } from './live.js';
import { resolveRouterOptions } from './options.js';
import type { RouterOptions } from './options.js';
import { createRouter } from './router.js';
import { ViewerRegistry } from './viewers.js';

/**
 * A flow's viewer mounts: the routers it made (each with its access rules, ViewerRegistry) and the
 * live channel, which holds each socket to the rules of the router whose page opened it.
 */
export class ViewerMounts {
  readonly #backend: ViewerBackend;
  readonly #reads: () => ViewerReads;
  readonly #viewers = new ViewerRegistry();
  #live: LiveChannel | undefined;

  constructor(backend: ViewerBackend, reads: () => ViewerReads) {
    this.#backend = backend;
    this.#reads = reads;
  }

  router(options?: RouterOptions): Router {
    const resolved = resolveRouterOptions(options);
    const viewer = this.#viewers.register(resolved);
    const live = () => (this.#live ? { channel: this.#live, viewer: viewer ?? '' } : null);
    return createRouter(this.#backend, resolved, this.#reads(), live);
  }

  attachLive(target: http.Server | SocketIOServer, options: LiveOptions & RouterOptions): LiveHandle {
    const hasOwnAccess = options.authorize !== undefined || options.basicAuth !== undefined || options.allowUnauthenticated !== undefined;
    const own = hasOwnAccess ? resolveRouterOptions(options) : undefined;
    this.#live = attachLive(this.#backend, target, own ? () => own : (req) => this.#viewers.rulesFor(req), options);
    return this.#live.handle;
  }

  async close(): Promise<void> {
    await this.#live?.handle.close();
  }
}
