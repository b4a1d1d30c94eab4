// Users, API tokens and audit events as the plain objects the settings pages show.
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import type { AuditEvent } from '@cronium/proto/api/v1/audit';
import type { ApiToken } from '@cronium/proto/api/v1/token';
import type { User } from '@cronium/proto/api/v1/user';
import type { RoleName } from '../roles.ts';
import { roleName } from './whoami.ts';

const isoOf = (ts: Timestamp | undefined): string | null => (ts ? timestampDate(ts).toISOString() : null);

export interface UserView {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  readonly role: RoleName;
  readonly disabled: boolean;
  readonly createdAt: string | null;
}

export function userView(user: User): UserView {
  return { id: user.id, email: user.email, name: user.name, role: roleName(user.role), disabled: user.disabled, createdAt: isoOf(user.createdAt) };
}

export interface TokenView {
  readonly id: string;
  readonly name: string;
  readonly role: RoleName;
  readonly userId: string;
  readonly createdAt: string | null;
  readonly expiresAt: string | null;
  readonly lastUsedAt: string | null;
  readonly revokedAt: string | null;
}

export function tokenView(token: ApiToken): TokenView {
  return {
    id: token.id,
    name: token.name,
    role: roleName(token.role),
    userId: token.userId,
    createdAt: isoOf(token.createdAt),
    expiresAt: isoOf(token.expiresAt),
    lastUsedAt: isoOf(token.lastUsedAt),
    revokedAt: isoOf(token.revokedAt),
  };
}

export interface AuditView {
  readonly id: string;
  readonly time: string | null;
  readonly userId: string;
  readonly credentialId: string;
  /** `EventService/CreateEvent`, without the package. */
  readonly method: string;
  readonly objectType: string;
  readonly objectId: string;
  readonly fields: string[];
  readonly remoteAddress: string;
  readonly userAgent: string;
  readonly outcome: string;
}

export function auditView(event: AuditEvent): AuditView {
  return {
    id: event.id,
    time: isoOf(event.time),
    userId: event.userId,
    credentialId: event.credentialId,
    method: event.method.replace(/^cronium\.api\.v1\./, ''),
    objectType: event.objectType,
    objectId: event.objectId,
    fields: [...event.fields],
    remoteAddress: event.remoteAddress,
    userAgent: event.userAgent,
    outcome: event.outcome,
  };
}
