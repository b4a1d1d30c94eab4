import { randomUUID } from 'node:crypto';
import { Code, ConnectError, type ServiceImpl } from '@connectrpc/connect';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import { sql } from 'kysely';
import { Role } from '@cronium/proto/api/v1/user';
import { TokenService } from '@cronium/proto/api/v1/token';
import { hashToken, newToken } from '../auth/tokens.ts';
import { roleAtMost } from '../auth/users.ts';
import { roleName, tokenToProto } from '../wire/user-messages.ts';
import { principalOf, thenForgetCredentials, type Principal } from './auth.ts';
import { audited } from './changes.ts';
import { invalid, notFound } from './errors.ts';
import type { ApiDeps } from './deps.ts';

const SHOWN = ['id', 'owner_id', 'name', 'role', 'created_at', 'expires_at', 'last_used_at', 'revoked_at'] as const;

export function tokenService(deps: ApiDeps): ServiceImpl<typeof TokenService> {
  const { db } = deps;
  const find = (principal: Principal, id: string) => {
    if (!id) throw invalid('id', 'required');
    let query = db.selectFrom('api_tokens').select(SHOWN).where('id', '=', id);
    if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
    return query.executeTakeFirstOrThrow(() => notFound('token', id));
  };
  return {
    async createToken(req, ctx) {
      const principal = principalOf(ctx.values);
      const name = req.name.trim();
      if (!name || name.length > 200) throw invalid('name', 'required, at most 200 characters');
      const role = req.role === Role.UNSPECIFIED ? principal.role : roleName(req.role);
      if (!role) throw invalid('role', 'ROLE_ADMIN, ROLE_USER or ROLE_VIEWER');
      if (!roleAtMost(role, principal.role)) throw new ConnectError(`role: at most your own (${principal.role})`, Code.PermissionDenied);
      const expiresAt = req.expiresAt ? timestampDate(req.expiresAt) : null;
      if (expiresAt && expiresAt.getTime() <= Date.now()) throw invalid('expiresAt', 'in the future');
      const secret = newToken();
      return audited(db, ctx, async (tx) => {
        const row = await tx
          .insertInto('api_tokens')
          .values({ id: randomUUID(), owner_id: principal.ownerId, role, name, token_hash: hashToken(secret), expires_at: expiresAt })
          .returning(SHOWN)
          .executeTakeFirstOrThrow();
        return { token: tokenToProto(row), secret };
      });
    },
    async listTokens(_req, ctx) {
      const principal = principalOf(ctx.values);
      let query = db.selectFrom('api_tokens').select(SHOWN).orderBy('created_at').orderBy('id');
      if (principal.role !== 'admin') query = query.where('owner_id', '=', principal.ownerId);
      return { tokens: (await query.execute()).map(tokenToProto) };
    },
    async revokeToken(req, ctx) {
      const principal = principalOf(ctx.values);
      const existing = await find(principal, req.id);
      return thenForgetCredentials(audited(db, ctx, async (tx) => {
        const row = await tx
          .updateTable('api_tokens')
          .set({ revoked_at: sql<Date>`coalesce(revoked_at, now())` })
          .where('id', '=', existing.id)
          .returning(SHOWN)
          .executeTakeFirstOrThrow();
        return { token: tokenToProto(row) };
      }));
    },
  };
}
