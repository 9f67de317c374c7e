import type { IncomingMessage } from 'node:http';
import type { ResolvedRouterOptions } from './options.js';

/** The access rules a live handshake is held to, or why none apply (said in the refusal). */
export type LiveRules = ResolvedRouterOptions | { refused: string };

/**
 * The viewer routers of one flow, for the live channel. The socket.io handshake does not pass through
 * Express, so it cannot know which mount's page opened it: each viewer page names its router instead
 * (query parameter `viewer` of the handshake), and the socket is held to that router's rules. Naming
 * another router gains nothing: its own check applies in full, exactly as on its pages.
 */
export class ViewerRegistry {
  readonly #viewers = new Map<string, ResolvedRouterOptions>();

  /**
   * Registers a router that serves the viewer and returns its id; an ingest-only router (no
   * `authorize`, `basicAuth` or `allowUnauthenticated`) serves no page and gets none.
   */
  register(options: ResolvedRouterOptions): string | undefined {
    if (!options.authorize && !options.basicAuth && !options.allowUnauthenticated) return undefined;
    const id = String(this.#viewers.size + 1);
    this.#viewers.set(id, options);
    return id;
  }

  /**
   * The rules of the viewer a handshake names. A client that names none (a socket.io client of the
   * app's own) gets the only viewer's rules, or is refused when there are several to choose from.
   */
  rulesFor(req: IncomingMessage): LiveRules {
    const named = new URL(req.url ?? '/', 'http://localhost').searchParams.getAll('viewer');
    if (named.length > 1) return { refused: 'Forbidden: the handshake names more than one `viewer`' };
    if (named.length === 1) {
      return (
        this.#viewers.get(named[0]!) ?? {
          refused: `Forbidden: no viewer router "${named[0]!.slice(0, 40)}" on this server (reload the viewer page to get its current one)`,
        }
      );
    }
    if (this.#viewers.size === 1) return [...this.#viewers.values()][0]!;
    if (this.#viewers.size === 0) {
      return {
        refused:
          'Forbidden: no viewer router to take access rules from. Create flow.router() with authorize, basicAuth or allowUnauthenticated, or give attachLive() its own.',
      };
    }
    return {
      refused: `Forbidden: this server has ${this.#viewers.size} viewer routers; name yours with the handshake query parameter \`viewer\` (viewer pages send their data-socket-viewer)`,
    };
  }
}
