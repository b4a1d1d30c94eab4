import type { ApiDeps } from './deps.ts';

/** The part of an HTTP/1.1 or HTTP/2 request and response these routes use. */
interface Request {
  readonly method?: string;
  readonly url?: string;
}
interface Response {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

/**
 * `/healthz` (the process answers), `/readyz` (it can serve: the database
 * answers) and `/metrics` (Prometheus text). Unauthenticated, like every
 * probe and scrape target; they reveal counts, never contents.
 */
export function opsRoutes(deps: ApiDeps): (req: Request, res: Response) => boolean {
  const send = (res: Response, status: number, contentType: string, body: string) => {
    res.writeHead(status, { 'content-type': contentType });
    res.end(body);
  };
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = (req.url ?? '').split('?')[0];
    if (path === '/healthz') {
      send(res, 200, 'text/plain', 'ok\n');
      return true;
    }
    if (path === '/readyz') {
      (deps.ready ?? (async () => {}))().then(
        () => send(res, 200, 'text/plain', 'ready\n'),
        (error: unknown) => send(res, 503, 'text/plain', `not ready: ${error instanceof Error ? error.message : String(error)}\n`),
      );
      return true;
    }
    if (path === '/metrics' && deps.metrics) {
      deps.metrics().then(
        ({ contentType, body }) => send(res, 200, contentType, body),
        (error: unknown) => send(res, 500, 'text/plain', `metrics failed: ${String(error)}\n`),
      );
      return true;
    }
    return false;
  };
}
