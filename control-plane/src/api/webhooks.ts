import type { ConnectNodeAdapterOptions } from '@connectrpc/connect-node';
import { ConnectError, Code } from '@connectrpc/connect';
import { fanOutAgents } from '../queue/enqueue.ts';
import { startRun } from '../queue/start-run.ts';
import { announceCancel } from './cancel.ts';
import { kickDispatch } from '../job-events.ts';
import { webhookAuthorized, type WebhookOwner } from '../workflows/webhook-secret.ts';
import { runWorkflow } from './workflow-service.ts';
import type { ApiDeps } from './deps.ts';
import { inTransaction, type Db } from '../store/database.ts';
import { writeAudit } from '../audit/log.ts';

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
 * POST /hooks/workflows/<key> and /hooks/events/<key>, authenticated by the
 * trigger's secret (see authorizedInput); the JSON body (at most 1 MiB; empty
 * means null) becomes the input. Answers 202 with what started. Returns false
 * for paths that are not hooks.
 */
export function webhookHandler(deps: ApiDeps): (req: Request, res: Response) => boolean {
  return (req, res) => {
    const match = HOOK_PATH.exec((req.url ?? '').split('?')[0]!);
    if (!match) return false;
    handle(deps, req, match[1] as WebhookOwner, match[2]!).then(
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

async function handle(deps: ApiDeps, req: Request, kind: WebhookOwner, key: string): Promise<Record<string, unknown>> {
  if (req.method !== 'POST') throw new HookError(405, 'use POST');
  // Refused before any lookup, so an oversized body costs nothing.
  if (Number(req.headers['content-length'] ?? 0) > MAX_WEBHOOK_BODY_BYTES) throw tooLarge();
  if (kind === 'workflows') {
    const workflow = await deps.db.selectFrom('workflows').selectAll().where('webhook_key', '=', key).where('deleted_at', 'is', null).executeTakeFirst();
    const input = await authorizedInput(deps, req, kind, workflow);
    const execution = await inTransaction(deps.db, async (tx) => {
      const started = await runWorkflow({ ...deps, db: tx }, workflow!, input, 'webhook');
      await auditHook(tx, req, kind, workflow!.owner_id, 'execution', started.id);
      return started;
    });
    kickDispatch(deps.bus);
    return { executionId: execution.id };
  }
  const event = await deps.db.selectFrom('events').selectAll().where('webhook_key', '=', key).where('deleted_at', 'is', null).executeTakeFirst();
  const input = await authorizedInput(deps, req, kind, event);
  if (event!.status !== 'active') throw new HookError(409, `event ${event!.id} is ${event!.status}`);
  const agents = await fanOutAgents(deps.db, deps.leaseTtlMs);
  // The event's concurrency policy applies to hooks as to RunEvent and schedules.
  const started = await inTransaction(deps.db, async (tx) => {
    const outcome = await startRun(tx, event!, input, agents);
    if (outcome.started) await auditHook(tx, req, kind, event!.owner_id, 'run', outcome.run.id);
    return outcome;
  });
  if (!started.started) throw new HookError(409, `event ${event!.id}: not started: ${started.reason}`);
  for (const cancelled of started.cancelled) announceCancel(deps.bus, cancelled);
  kickDispatch(deps.bus);
  return { runId: started.run.id, jobIds: started.jobIds };
}

/**
 * Unknown key: 404. Then the proof: X-Cronium-Secret, or an HMAC-SHA256 of the
 * body in X-Cronium-Signature-256 (or GitHub's X-Hub-Signature-256), both
 * compared in constant time; missing or wrong: 401. Then the body as JSON.
 */
async function authorizedInput(deps: ApiDeps, req: Request, kind: WebhookOwner, target: { id: string; webhook_secret_sealed: string | null } | undefined): Promise<unknown> {
  if (!target) throw new HookError(404, `no ${kind === 'workflows' ? 'workflow' : 'event'} webhook with this key`);
  const body = await readBody(req);
  const header = (name: string) => {
    const value = req.headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const proof = { secret: header('x-cronium-secret'), signature: header('x-cronium-signature-256') ?? header('x-hub-signature-256') };
  if (!webhookAuthorized(deps.sealer, kind, target, proof, body)) throw new HookError(401, 'missing or wrong X-Cronium-Secret (or X-Cronium-Signature-256)');
  return parseJson(body);
}

async function readBody(req: Request): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_WEBHOOK_BODY_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** A webhook acts for the owner of what it starts; its audit row says so, in the start's transaction. */
async function auditHook(tx: Db, req: Request, kind: WebhookOwner, ownerId: string, objectType: string, objectId: string): Promise<void> {
  const userAgent = req.headers['user-agent'];
  await writeAudit(tx, {
    userId: ownerId,
    credentialId: 'webhook',
    method: `POST /hooks/${kind}`,
    objectType,
    objectId,
    fields: [],
    remoteAddress: req.socket?.remoteAddress ?? '',
    userAgent: typeof userAgent === 'string' ? userAgent : '',
  });
}

function tooLarge(): HookError {
  return new HookError(413, `body: larger than ${MAX_WEBHOOK_BODY_BYTES} bytes`);
}

function parseJson(body: Buffer): unknown {
  const text = body.toString('utf8');
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
