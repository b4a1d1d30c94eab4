import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { RoleName } from '../store/schema.ts';
import { FIRST_ADMIN_ID, lowerRole } from './users.ts';

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
    // Replicas starting at once insert the same row: any conflict (id or hash) means another got there first,
    // and the update then makes the row say what this start was given.
    await db
      .insertInto('api_tokens')
      .values({ id: 'admin-from-env', owner_id: FIRST_ADMIN_ID, role: 'admin', name: 'CRONIUM_ADMIN_TOKEN', token_hash: hash })
      .onConflict((oc) => oc.doNothing())
      .execute();
    await db.updateTable('api_tokens').set({ token_hash: hash, revoked_at: null, expires_at: null }).where('id', '=', 'admin-from-env').execute();
    return undefined;
  }
  const existing = await db.selectFrom('api_tokens').select('id').where('role', '=', 'admin').where('revoked_at', 'is', null).executeTakeFirst();
  if (existing) return undefined;
  const token = newToken();
  await db.insertInto('api_tokens').values({ id: randomUUID(), owner_id: FIRST_ADMIN_ID, role: 'admin', name: 'first admin token', token_hash: hashToken(token) }).execute();
  return token;
}

/**
 * The owner and role an API token acts with: refused when revoked, expired, or
 * its user is disabled or deleted; the role is the token's or the user's, whichever is lower.
 */
export async function tokenHolder(db: Db, token: string): Promise<{ tokenId: string; userId: string; role: RoleName; expiresAt: Date | null } | undefined> {
  const row = await db
    .selectFrom('api_tokens as t')
    .leftJoin('users as u', 'u.id', 't.owner_id')
    .select(['t.id', 't.owner_id', 't.role', 't.expires_at', 'u.role as user_role', 'u.id as user_id', 'u.disabled', 'u.deleted_at'])
    .where('t.token_hash', '=', hashToken(token))
    .where('t.revoked_at', 'is', null)
    .where((eb) => eb.or([eb('t.expires_at', 'is', null), eb('t.expires_at', '>', sql<Date>`now()`)]))
    .executeTakeFirst();
  if (!row) return undefined;
  if (row.user_id !== null && (row.disabled || row.deleted_at)) return undefined;
  await db.updateTable('api_tokens').set({ last_used_at: sql<Date>`now()` }).where('id', '=', row.id).execute();
  const role = row.role as RoleName;
  return { tokenId: row.id, userId: row.owner_id, role: row.user_role ? lowerRole(role, row.user_role) : role, expiresAt: row.expires_at && new Date(row.expires_at) };
}
