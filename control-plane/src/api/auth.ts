import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, createContextKey, type Interceptor } from '@connectrpc/connect';
import { sql } from 'kysely';
import type { Db } from '../store/database.ts';

export interface Principal {
  readonly ownerId: string;
  readonly role: 'admin' | 'user' | 'viewer';
}

export const principalKey = createContextKey<Principal | undefined>(undefined, { description: 'the caller' });

export function principalOf(values: { get<T>(key: { id: symbol; defaultValue: T }): T }): Principal {
  const principal = values.get(principalKey);
  if (!principal) throw new ConnectError('authentication required', Code.Unauthenticated);
  return principal;
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function newToken(): string {
  return `crn_${randomBytes(32).toString('base64url')}`;
}

/**
 * Makes sure an admin token exists: the one given by CRONIUM_ADMIN_TOKEN, or a
 * generated one on first start (returned so it can be printed once; only its
 * hash is stored).
 */
export async function ensureAdminToken(db: Db, given: string | undefined): Promise<string | undefined> {
  if (given) {
    const hash = hashToken(given);
    await db
      .insertInto('api_tokens')
      .values({ id: 'admin-from-env', owner_id: 'admin', role: 'admin', name: 'CRONIUM_ADMIN_TOKEN', token_hash: hash })
      .onConflict((oc) => oc.column('id').doUpdateSet({ token_hash: hash, revoked_at: null }))
      .execute();
    return undefined;
  }
  const existing = await db.selectFrom('api_tokens').select('id').where('role', '=', 'admin').where('revoked_at', 'is', null).executeTakeFirst();
  if (existing) return undefined;
  const token = newToken();
  await db.insertInto('api_tokens').values({ id: randomUUID(), owner_id: 'admin', role: 'admin', name: 'first admin token', token_hash: hashToken(token) }).execute();
  return token;
}

/** Every call needs `Authorization: Bearer <token>`. */
export function authInterceptor(db: Db): Interceptor {
  const cache = new Map<string, { principal: Principal; until: number }>();
  return (next) => async (req) => {
    const header = req.header.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new ConnectError('missing bearer token (Authorization: Bearer <token>)', Code.Unauthenticated);
    const hash = hashToken(match[1]!);
    let principal = cache.get(hash);
    if (!principal || principal.until < Date.now()) {
      const row = await db
        .selectFrom('api_tokens')
        .select(['id', 'owner_id', 'role', 'token_hash'])
        .where('token_hash', '=', hash)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (!row || !timingSafeEqual(Buffer.from(row.token_hash), Buffer.from(hash))) {
        throw new ConnectError('invalid or revoked token', Code.Unauthenticated);
      }
      await db.updateTable('api_tokens').set({ last_used_at: sql<Date>`now()` }).where('id', '=', row.id).execute();
      principal = { principal: { ownerId: row.owner_id, role: row.role as Principal['role'] }, until: Date.now() + 5_000 };
      cache.set(hash, principal);
    }
    req.contextValues.set(principalKey, principal.principal);
    return next(req);
  };
}
