// Serves the operator console (console/, a SvelteKit app built by adapter-node)
// on the API's HTTP port, for every path outside /api. The console is optional:
// without a build the control plane answers those paths with a hint.
import { existsSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { shareWithConsole } from './console-client.ts';

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

export const consoleBuild = resolve(import.meta.dirname, '../../../console/build/handler.js');

/** Paths the API and webhooks own never reach the console, even when no route matched them. */
export function servesConsole(url: string | undefined): boolean {
  const path = (url ?? '/').split('?')[0]!;
  return !/^\/(api|hooks)(\/|$)/.test(path);
}

/**
 * The built console, pointed at this server's own API over loopback (the
 * console talks to the control plane only through the public API). Its
 * server code (about 40 MB resident) is imported by the first console
 * request, not at start: a control plane nobody opens the console on never
 * holds it.
 */
export function loadConsole(host: string, httpPort: number): NodeHandler | undefined {
  if (!existsSync(consoleBuild)) return undefined;
  const apiHost = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  process.env.CRONIUM_API_URL ||= `http://${apiHost.includes(':') ? `[${apiHost}]` : apiHost}:${httpPort}/api`;
  // This server speaks plain HTTP: a request says https only when a TLS proxy in
  // front sets X-Forwarded-Proto (adapter-node would otherwise assume https).
  process.env.CRONIUM_CONSOLE_PROTOCOL_HEADER ||= 'x-forwarded-proto';
  shareWithConsole();
  let loading: Promise<NodeHandler> | undefined;
  return (req, res) => {
    req.headers['x-forwarded-proto'] ??= 'http';
    loading ??= import(pathToFileURL(consoleBuild).href).then((module: { handler: NodeHandler }) => module.handler);
    loading.then(
      (handler) => handler(req, res),
      (error: unknown) => {
        loading = undefined;
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`the console could not be loaded: ${String(error)}\n`);
      },
    );
  };
}
