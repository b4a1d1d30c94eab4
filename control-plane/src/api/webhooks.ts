import type { ConnectNodeAdapterOptions } from '@connectrpc/connect-node';
import { ConnectError, Code } from '@connectrpc/connect';
import { enqueueRun, fanOutAgents } from '../queue/enqueue.ts';
import { kickDispatch } from '../job-events.ts';
import { secretMatches } from '../workflows/webhook-secret.ts';
import { runWorkflow } from './workflow-service.ts';
import type { ApiDeps } from './deps.ts';

type Request = Parameters<NonNullable<ConnectNodeAdapterOptions['fallback']>>[0];
type Response = Parameters<NonNullable<ConnectNodeAdapterOptions['fallback']>>[1];

export const MAX_WEBHOOK_BODY_BYTES = 1024 * 1024;
const HOOK_PATH = /^\/hooks\/(workflows|events)\/([A-Za-z0-9_-]{1,128})\/?$/;

class HookError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * POST /hooks/workflows/<key> and /hooks/events/<key>: the header
 * X-Cronium-Secret must hold the trigger's secret; the JSON body (at most
 * 1 MiB; empty means null) becomes the input. Answers 202 with what started.
 * Returns false for paths that are not hooks.
 */
export function webhookHandler(deps: ApiDeps): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const match = HOOK_PATH.exec((req.url ?? '').split('?')[0]!);
    if (!match) return false;
    handle(deps, req, match[1] as 'workflows' | 'events', match[2]!).then(
      (body) => reply(res, 202, body),
      (error: unknown) => {
        if (error instanceof HookError) reply(res, error.status, { error: error.message });
        else if (error instanceof ConnectError && error.code === Code.FailedPrecondition) reply(res, 409, { error: error.rawMessage });
        else reply(res, 500, { error: 'internal error' });
      },
    );
    return true;
  };
}

async function handle(deps: ApiDeps, req: Request, kind: 'workflows' | 'events', key: string): Promise<Record<string, unknown>> {
  if (req.method !== 'POST') throw new HookError(405, 'use POST');
  if (kind === 'workflows') {
    const workflow = await deps.db.selectFrom('workflows').selectAll().where('webhook_key', '=', key).where('deleted_at', 'is', null).executeTakeFirst();
    authorize(req, workflow, 'workflow');
    const execution = await runWorkflow(deps, workflow!, await readJson(req), 'webhook');
    return { executionId: execution.id };
  }
  const event = await deps.db.selectFrom('events').selectAll().where('webhook_key', '=', key).where('deleted_at', 'is', null).executeTakeFirst();
  authorize(req, event, 'event');
  const input = await readJson(req);
  if (event!.status !== 'active') throw new HookError(409, `event ${event!.id} is ${event!.status}`);
  const { run, jobIds } = await enqueueRun(deps.db, event!, input, await fanOutAgents(deps.db, deps.leaseTtlMs));
  kickDispatch(deps.bus);
  return { runId: run.id, jobIds };
}

/** Unknown key: 404; the secret header missing or wrong: 401 (compared in constant time). */
function authorize(req: Request, target: { webhook_secret_hash: string | null } | undefined, what: string): void {
  if (!target) throw new HookError(404, `no ${what} webhook with this key`);
  const secret = req.headers['x-cronium-secret'];
  if (typeof secret !== 'string' || !secretMatches(secret, target.webhook_secret_hash)) throw new HookError(401, 'missing or wrong X-Cronium-Secret');
}

async function readJson(req: Request): Promise<unknown> {
  if (Number(req.headers['content-length'] ?? 0) > MAX_WEBHOOK_BODY_BYTES) throw new HookError(413, `body: larger than ${MAX_WEBHOOK_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_WEBHOOK_BODY_BYTES) throw new HookError(413, `body: larger than ${MAX_WEBHOOK_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HookError(400, `body: not valid JSON: ${(error as Error).message}`);
  }
}

function reply(res: Response, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
