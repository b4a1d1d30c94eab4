import { randomUUID } from 'node:crypto';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { sql } from 'kysely';
import { Role, UserService } from '@cronium/proto/api/v1/user';
import type { Db } from '../store/database.ts';
import type { UserRow } from '../store/schema.ts';
import { hashPassword, passwordProblem, verifyPassword } from '../auth/passwords.ts';
import { endSessions } from '../auth/sessions.ts';
import { normalEmail, userByEmail } from '../auth/users.ts';
import { roleName, userToProto } from '../wire/user-messages.ts';
import { mustAdmin, principalOf, thenForgetCredentials } from './auth.ts';
import { audited } from './changes.ts';
import { invalid, notFound } from './errors.ts';
import type { ApiDeps } from './deps.ts';

const EMAIL = /^[^\s@]+@[^\s@]+$/;

function checkedPassword(password: string, field: string): string {
  const problem = passwordProblem(password);
  if (problem) throw invalid(field, problem);
  return password;
}

function checkedRole(role: Role, field: string) {
  const name = roleName(role);
  if (!name) throw invalid(field, 'ROLE_ADMIN, ROLE_USER or ROLE_VIEWER');
  return name;
}

export async function findUser(db: Db, id: string): Promise<UserRow> {
  if (!id) throw invalid('id', 'required');
  return db.selectFrom('users').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirstOrThrow(() => notFound('user', id));
}


export function userService(deps: ApiDeps): ServiceImpl<typeof UserService> {
  const { db } = deps;
  return {
    async createUser(req, ctx) {
      mustAdmin(principalOf(ctx.values));
      const email = normalEmail(req.email);
      if (!EMAIL.test(email) || email.length > 254) throw invalid('email', 'an email address');
      const role = req.role === Role.UNSPECIFIED ? 'user' : checkedRole(req.role, 'role');
      const passwordHash = await hashPassword(checkedPassword(req.password, 'password'));
      if (await userByEmail(db, email)) throw new ConnectError(`a user with email ${email} exists`, Code.AlreadyExists);
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .insertInto('users')
          .values({ id: randomUUID(), email, name: req.name.trim(), role, password_hash: passwordHash })
          .returningAll()
          .executeTakeFirstOrThrow();
        return { user: userToProto(row) };
      });
    },
    async listUsers(_req, ctx) {
      mustAdmin(principalOf(ctx.values));
      const rows = await db.selectFrom('users').selectAll().where('deleted_at', 'is', null).orderBy('created_at').orderBy('id').execute();
      return { users: rows.map(userToProto) };
    },
    async updateUser(req, ctx) {
      const principal = principalOf(ctx.values);
      mustAdmin(principal);
      const existing = await findUser(db, req.id);
      const role = req.role === Role.UNSPECIFIED ? undefined : checkedRole(req.role, 'role');
      if (existing.id === principal.ownerId && ((role && role !== 'admin') || req.disabled)) {
        throw new ConnectError('admins cannot demote or disable themselves', Code.FailedPrecondition);
      }
      const passwordHash = req.password === undefined ? undefined : await hashPassword(checkedPassword(req.password, 'password'));
      return thenForgetCredentials(audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('users')
          .set({
            ...(req.name === undefined ? {} : { name: req.name.trim() }),
            ...(role ? { role } : {}),
            ...(req.disabled === undefined ? {} : { disabled: req.disabled }),
            ...(passwordHash ? { password_hash: passwordHash } : {}),
            updated_at: sql<Date>`now()`,
          })
          .where('id', '=', existing.id)
          .returningAll()
          .executeTakeFirstOrThrow();
        // A disabled user, or one whose password an admin reset, is signed out everywhere.
        if (row.disabled || passwordHash) await endSessions(tx, { userId: row.id });
        return { user: userToProto(row) };
      }));
    },
    async deleteUser(req, ctx) {
      const principal = principalOf(ctx.values);
      mustAdmin(principal);
      const existing = await findUser(db, req.id);
      if (existing.id === principal.ownerId) throw new ConnectError('admins cannot delete themselves', Code.FailedPrecondition);
      return thenForgetCredentials(audited(db, ctx, async (tx) => {
        await tx.updateTable('users').set({ deleted_at: sql<Date>`now()`, disabled: true }).where('id', '=', existing.id).execute();
        await tx.updateTable('api_tokens').set({ revoked_at: sql<Date>`now()` }).where('owner_id', '=', existing.id).where('revoked_at', 'is', null).execute();
        await endSessions(tx, { userId: existing.id });
        return {};
      }));
    },
    async changePassword(req, ctx) {
      const principal = principalOf(ctx.values);
      const user = await findUser(db, principal.ownerId);
      const fresh = checkedPassword(req.newPassword, 'newPassword');
      if (!(await verifyPassword(req.currentPassword, user.password_hash))) throw invalid('currentPassword', 'wrong password');
      const passwordHash = await hashPassword(fresh);
      return thenForgetCredentials(
        audited(
          db,
          ctx,
          async (tx) => {
            await tx.updateTable('users').set({ password_hash: passwordHash, updated_at: sql<Date>`now()` }).where('id', '=', user.id).execute();
            // Other sessions end; the one changing the password goes on.
            await endSessions(tx, { userId: user.id, exceptSessionId: principal.credential === 'session' ? principal.credentialId : undefined });
            return {};
          },
          { id: () => user.id },
        ),
      );
    },
  };
}
