import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Role, UserSchema, type User } from '@cronium/proto/api/v1/user';
import { ApiTokenSchema, type ApiToken } from '@cronium/proto/api/v1/token';
import { AuditEventSchema, type AuditEvent } from '@cronium/proto/api/v1/audit';
import type { AuditEventsTable, RoleName, UserRow } from '../store/schema.ts';
import type { Selectable } from 'kysely';

export const roles: Record<RoleName, Role> = { admin: Role.ADMIN, user: Role.USER, viewer: Role.VIEWER };

export function roleName(role: Role): RoleName | undefined {
  return (Object.keys(roles) as RoleName[]).find((name) => roles[name] === role);
}

const time = (date: Date | string | null) => (date ? timestampFromDate(new Date(date)) : undefined);

export function userToProto(row: UserRow): User {
  return create(UserSchema, {
    id: row.id,
    email: row.email,
    name: row.name,
    role: roles[row.role],
    disabled: row.disabled,
    createdAt: time(row.created_at),
    updatedAt: time(row.updated_at),
  });
}

export interface TokenRowView {
  readonly id: string;
  readonly owner_id: string;
  readonly name: string;
  readonly role: string;
  readonly created_at: Date;
  readonly expires_at: Date | null;
  readonly last_used_at: Date | null;
  readonly revoked_at: Date | null;
}

/** Never the secret nor its hash. */
export function tokenToProto(row: TokenRowView): ApiToken {
  return create(ApiTokenSchema, {
    id: row.id,
    name: row.name,
    role: roles[row.role as RoleName],
    userId: row.owner_id,
    createdAt: time(row.created_at),
    expiresAt: time(row.expires_at),
    lastUsedAt: time(row.last_used_at),
    revokedAt: time(row.revoked_at),
  });
}

export function auditToProto(row: Selectable<AuditEventsTable>): AuditEvent {
  return create(AuditEventSchema, {
    id: String(row.id),
    time: time(row.at),
    userId: row.user_id,
    credentialId: row.credential_id,
    method: row.method,
    objectType: row.object_type,
    objectId: row.object_id,
    fields: row.fields,
    remoteAddress: row.remote_address,
    userAgent: row.user_agent,
    outcome: row.outcome,
  });
}
