import { create, fromJson, toBinary, toJson, type DescMessage, type JsonValue } from '@bufbuild/protobuf';
import { Code, ConnectError, createContextKey, type ContextValues, type HandlerContext, type Interceptor } from '@connectrpc/connect';
import { inTransaction, type Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import { writeAudit } from '../audit/log.ts';
import { mustChange, originKey, principalKey } from './auth.ts';
import { invalid } from './errors.ts';
import { keepAnswer, MAX_KEY_LENGTH, requestHash, storedAnswer, takesIdempotencyKey } from './idempotency.ts';

/** What the interceptor learnt about a change call, for the service to record inside its transaction. */
interface ChangeState {
  readonly method: string;
  readonly output: DescMessage;
  readonly objectType: string;
  readonly fields: readonly string[];
  readonly request: Record<string, unknown>;
  readonly idempotency?: { readonly key: string; readonly hash: string; readonly sealer: Sealer };
  recorded: boolean;
}

const changeKey = createContextKey<ChangeState | undefined>(undefined, { description: 'the change this call makes' });

const OBJECT_TYPES: Record<string, string> = {
  EventService: 'event',
  RunService: 'run',
  JobService: 'job',
  AgentService: 'agent',
  ServerService: 'server',
  WorkflowService: 'workflow',
  VariableService: 'variable',
  NotificationService: 'channel',
  UserService: 'user',
  TokenService: 'token',
  AuthService: 'session',
};

/** What a viewer may change: only their own credentials. */
const VIEWER_CHANGES = new Set([
  'cronium.api.v1.AuthService/SignIn',
  'cronium.api.v1.AuthService/SignOut',
  'cronium.api.v1.UserService/ChangePassword',
  'cronium.api.v1.TokenService/CreateToken',
  'cronium.api.v1.TokenService/RevokeToken',
]);

export function isChange(methodName: string): boolean {
  return !/^(Get|List|Watch|WhoAmI)/.test(methodName);
}

/** The names of the fields a request set, one level into plain messages (`event.script`); never values. */
export function fieldNames(schema: DescMessage, json: Record<string, unknown>): string[] {
  const names: string[] = [];
  for (const field of schema.fields) {
    if (!(field.jsonName in json)) continue;
    const value = json[field.jsonName];
    const plainMessage = field.fieldKind === 'message' && !field.message.typeName.startsWith('google.protobuf.');
    const inner = plainMessage && value && typeof value === 'object' ? Object.keys(value) : [];
    if (inner.length > 0) names.push(...inner.map((name) => `${field.jsonName}.${name}`));
    else names.push(field.jsonName);
  }
  return names;
}

function objectIdOf(request: Record<string, unknown>, response: Record<string, unknown>): string {
  const idOf = (value: unknown) => (value && typeof value === 'object' && typeof (value as { id?: unknown }).id === 'string' ? (value as { id: string }).id : '');
  for (const direct of [request.id, request.key]) if (typeof direct === 'string' && direct) return direct;
  for (const value of [...Object.values(response), ...Object.values(request)]) if (idOf(value)) return idOf(value);
  // An answer naming what it made by reference (CreateJoinToken: agentId).
  const named = Object.entries(response).find(([name, value]) => name.endsWith('Id') && typeof value === 'string' && value);
  return named ? (named[1] as string) : '';
}

export interface ChangeDetails<R> {
  /** Default: the service's kind of object. */
  readonly type?: string;
  /** Default: the request's id, else the id of the object answered. */
  readonly id?: (response: R) => string;
  /** For calls made before there is a principal (SignIn). */
  readonly actor?: (response: R) => { readonly userId: string; readonly credentialId: string };
}

async function record(db: Db, values: ContextValues, state: ChangeState, response: object, details: ChangeDetails<any> = {}): Promise<void> {
  const principal = values.get(principalKey);
  const origin = values.get(originKey);
  const actor = details.actor?.(response) ?? { userId: principal?.ownerId ?? '', credentialId: principal?.credentialId ?? '' };
  const message = create(state.output, response as never);
  const json = toJson(state.output, message) as Record<string, unknown>;
  await writeAudit(db, {
    ...actor,
    method: state.method,
    objectType: details.type ?? state.objectType,
    objectId: details.id?.(response) ?? objectIdOf(state.request, json),
    fields: state.fields,
    ...origin,
  });
  if (state.idempotency && principal) await keepAnswer(db, state.idempotency.sealer, principal.ownerId, state.idempotency.key, state.idempotency.hash, json);
}

/**
 * Runs a change in one transaction with its audit row (and, under an
 * Idempotency-Key, its answer), so a change that fails leaves neither.
 */
export async function audited<R extends object>(db: Db, ctx: HandlerContext, change: (tx: Db) => Promise<R>, details?: ChangeDetails<R>): Promise<R> {
  const state = ctx.values.get(changeKey);
  const response = await inTransaction(db, async (tx) => {
    const result = await change(tx);
    if (state) await record(tx, ctx.values, state, result, details);
    return result;
  });
  if (state) state.recorded = true;
  return response;
}

/** A refused attempt worth keeping (a failed sign-in), outside any transaction. */
export async function auditRefusal(db: Db, ctx: HandlerContext, objectId: string, outcome: string, userId = ''): Promise<void> {
  const state = ctx.values.get(changeKey);
  if (!state) return;
  await writeAudit(db, { userId, credentialId: '', method: state.method, objectType: state.objectType, objectId, fields: state.fields, ...ctx.values.get(originKey), outcome });
}

/**
 * For every change call: notes who, what and from where for the audit row
 * (written by `audited` inside the service's transaction, or here after a
 * change that has none), and answers a repeated Idempotency-Key from the store.
 */
export function changeInterceptor(db: Db, sealer: Sealer): Interceptor {
  return (next) => async (req) => {
    if (req.stream || !isChange(req.method.name)) return next(req);
    const method = `${req.service.typeName}/${req.method.name}`;
    const requestJson = toJson(req.method.input, req.message) as Record<string, unknown>;
    const key = req.header.get('idempotency-key') ?? '';
    let idempotency: ChangeState['idempotency'];
    const principal = req.contextValues.get(principalKey);
    // Each service refuses viewers too; this holds for any call added later.
    if (principal && !VIEWER_CHANGES.has(method)) mustChange(principal);
    if (key) {
      if (!takesIdempotencyKey(req.method.name)) throw invalid('Idempotency-Key', 'only RunEvent, RunWorkflow and Create* calls (except CreateToken and CreateJoinToken) take one');
      if (key.length > MAX_KEY_LENGTH) throw invalid('Idempotency-Key', `at most ${MAX_KEY_LENGTH} characters`);
      if (principal) idempotency = { key, hash: requestHash(method, toBinary(req.method.input, req.message)), sealer };
    }
    const replay = async () => {
      const stored = idempotency && principal && (await storedAnswer(db, sealer, principal.ownerId, idempotency.key));
      if (!stored || !idempotency) return undefined;
      if (stored.requestHash !== idempotency.hash) {
        throw new ConnectError('Idempotency-Key: already used with a different request', Code.FailedPrecondition);
      }
      const header = new Headers({ 'idempotent-replayed': 'true' });
      return { stream: false as const, service: req.service, method: req.method, header, trailer: new Headers(), message: fromJson(req.method.output, stored.response as JsonValue), contextValues: req.contextValues };
    };
    const earlier = await replay();
    if (earlier) return earlier;
    const state: ChangeState = {
      method,
      output: req.method.output,
      objectType: OBJECT_TYPES[req.service.name] ?? req.service.name,
      fields: fieldNames(req.method.input, requestJson),
      request: requestJson,
      idempotency,
      recorded: false,
    };
    req.contextValues.set(changeKey, state);
    let response;
    try {
      response = await next(req);
    } catch (error) {
      // A call racing this one with the same key committed first: answer what it answered.
      const raced = idempotency && !(error instanceof ConnectError) ? await replay() : undefined;
      if (raced) return raced;
      throw error;
    }
    if (!state.recorded && !response.stream) await inTransaction(db, (tx) => record(tx, req.contextValues, state, response.message));
    return response;
  };
}
