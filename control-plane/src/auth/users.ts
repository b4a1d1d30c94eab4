import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { Db } from '../store/database.ts';
import type { RoleName, UserRow } from '../store/schema.ts';
import { hashPassword, verifyPassword } from './passwords.ts';

/** The first admin's id: what the admin API token has always owned, so its objects stay theirs. */
export const FIRST_ADMIN_ID = 'admin';
export const DEFAULT_ADMIN_EMAIL = 'admin@localhost';

const RANK: Record<RoleName, number> = { viewer: 1, user: 2, admin: 3 };

export function lowerRole(a: RoleName, b: RoleName): RoleName {
  return RANK[a] <= RANK[b] ? a : b;
}

export function roleAtMost(role: RoleName, limit: RoleName): boolean {
  return RANK[role] <= RANK[limit];
}

export function normalEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** A user who may act: not deleted, not disabled. */
export async function activeUser(db: Db, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).where('deleted_at', 'is', null).where('disabled', '=', false).executeTakeFirst();
}

export async function userByEmail(db: Db, email: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where(sql<string>`lower(email)`, '=', normalEmail(email)).where('deleted_at', 'is', null).executeTakeFirst();
}

/**
 * Makes sure the first admin exists. With CRONIUM_ADMIN_PASSWORD it signs in
 * with that password (set again at each start, like CRONIUM_ADMIN_TOKEN);
 * without, a password is generated on the first start and returned to be
 * printed once (only its hash is kept).
 */
export async function ensureFirstAdmin(db: Db, given: { email?: string; password?: string }): Promise<string | undefined> {
  const email = normalEmail(given.email || DEFAULT_ADMIN_EMAIL);
  const existing = await db.selectFrom('users').selectAll().where('id', '=', FIRST_ADMIN_ID).executeTakeFirst();
  if (existing) {
    if (!given.password) return undefined;
    if (existing.email === email && !existing.deleted_at && (await verifyPassword(given.password, existing.password_hash))) return undefined;
    await db
      .updateTable('users')
      .set({ email, role: 'admin', disabled: false, deleted_at: null, password_hash: await hashPassword(given.password), updated_at: sql<Date>`now()` })
      .where('id', '=', FIRST_ADMIN_ID)
      .execute();
    return undefined;
  }
  const password = given.password || randomBytes(18).toString('base64url');
  const inserted = await db
    .insertInto('users')
    .values({ id: FIRST_ADMIN_ID, email, name: 'Administrator', role: 'admin', password_hash: await hashPassword(password) })
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst();
  // Two replicas starting at once: only the one whose row was kept prints its password.
  return given.password || !inserted ? undefined : password;
}
