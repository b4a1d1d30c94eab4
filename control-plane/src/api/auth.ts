import { createHash } from 'node:crypto';
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import type { Db } from '../store/database.ts';
import type { RoleName } from '../store/schema.ts';
import { tokenHolder } from '../auth/tokens.ts';
import { looksLikeSessionToken, verifySession } from '../auth/sessions.ts';
import { activeUser } from '../auth/users.ts';
import type { RateLimiter } from '../auth/rate-limit.ts';
import { tooManyRequests } from './errors.ts';

export { ensureAdminToken, newToken } from '../auth/tokens.ts';

export interface Principal {
  /** The user: owner of what they make. */
  readonly ownerId: string;
  readonly role: RoleName;
  readonly credential: 'token' | 'session';
  /** The API token's or the session's id. */
  readonly credentialId: string;
}

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: 'the caller' });

/** Where a call came from, for the audit log and sign-in limits. */
export interface CallOrigin {
  readonly remoteAddress: string;
  readonly userAgent: string;
}
export const originKey = createContextKey<CallOrigin>({ remoteAddress: '', userAgent: '' }, { description: 'where the call came from' });

export function principalOf(values: { get<T>(key: { id: symbol; defaultValue: T }): T }): Principal {
  const principal = values.get(principalKey);
  if (!principal) throw new ConnectError('authentication required', Code.Unauthenticated);
  return principal;
}

export function mustChange(principal: Principal): void {
  if (principal.role === 'viewer') throw new ConnectError('viewers cannot change anything', Code.PermissionDenied);
}

export function mustAdmin(principal: Principal): void {
  if (principal.role !== 'admin') throw new ConnectError('admins only', Code.PermissionDenied);
}

/** Calls that need no credential. */
const PUBLIC_METHODS = new Set(['cronium.api.v1.AuthService/SignIn']);
const CACHE_MS = 5_000;
const cache = new Map<string, { principal: Principal; until: number }>();

/** After a sign-out, revocation or user change: this replica stops honouring cached credentials at once (others within CACHE_MS). */
export function forgetCachedCredentials(): void {
  cache.clear();
}

/** The caller, and until when the credential holds (for the cache). */
/** Once a change to who may call has committed, this replica stops honouring what it cached. */
export async function thenForgetCredentials<R>(committed: Promise<R>): Promise<R> {
  const result = await committed;
  forgetCachedCredentials();
  return result;
}

async function resolvePrincipal(db: Db, sessionKey: Uint8Array, bearer: string): Promise<{ principal: Principal; expiresAt: Date | null } | undefined> {
  if (looksLikeSessionToken(bearer)) {
    const session = await verifySession(db, sessionKey, bearer);
    const user = session && (await activeUser(db, session.userId));
    return user && { principal: { ownerId: user.id, role: user.role, credential: 'session', credentialId: session.sessionId }, expiresAt: session.expiresAt };
  }
  const holder = await tokenHolder(db, bearer);
  return holder && { principal: { ownerId: holder.userId, role: holder.role, credential: 'token', credentialId: holder.tokenId }, expiresAt: holder.expiresAt };
}

export interface AuthOptions {
  readonly db: Db;
  readonly sessionKey: Uint8Array;
  /** Per credential; none: unlimited. */
  readonly apiLimiter?: RateLimiter;
}

/**
 * The caller an API token or session token names, checked against the store
 * at most every CACHE_MS; undefined when invalid, expired or revoked. Also
 * what the terminal WebSocket gateway checks its credential with.
 */
export async function authenticate(options: AuthOptions, bearer: string): Promise<Principal | undefined> {
  const key = createHash('sha256').update(bearer).digest('hex');
  const entry = cache.get(key);
  if (entry && entry.until >= Date.now()) return entry.principal;
  const resolved = await resolvePrincipal(options.db, options.sessionKey, bearer);
  if (!resolved) {
    cache.delete(key);
    return undefined;
  }
  cache.set(key, { principal: resolved.principal, until: Math.min(Date.now() + CACHE_MS, resolved.expiresAt?.getTime() ?? Infinity) });
  return resolved.principal;
}

/** Every call but SignIn needs `Authorization: Bearer <API token or session token>`. */
export function authInterceptor(options: AuthOptions): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_METHODS.has(`${req.service.typeName}/${req.method.name}`)) return next(req);
    const match = /^Bearer\s+(\S+)$/i.exec(req.header.get('authorization') ?? '');
    if (!match) throw new ConnectError('missing bearer token (Authorization: Bearer <token>)', Code.Unauthenticated);
    const principal = await authenticate(options, match[1]!);
    if (!principal) throw new ConnectError('invalid, expired or revoked token', Code.Unauthenticated);
    const allowed = options.apiLimiter?.take(principal.credentialId);
    if (allowed && !allowed.ok) throw tooManyRequests('requests with this credential', allowed.retryAfterMs);
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}
