// The proto user and role, as the plain objects pages get.
import { Role, type User } from '@cronium/proto/api/v1/user';
import type { Me, RoleName } from '#lib/roles.ts';
import type { Api } from './api.ts';

const names: Partial<Record<Role, RoleName>> = { [Role.ADMIN]: 'admin', [Role.USER]: 'user', [Role.VIEWER]: 'viewer' };
const byName: Record<RoleName, Role> = { admin: Role.ADMIN, user: Role.USER, viewer: Role.VIEWER };

/** Unknown roles read as viewer: the console never offers more than the API allows. */
export function roleName(role: Role): RoleName {
  return names[role] ?? 'viewer';
}

export function roleFromName(name: string): Role | undefined {
  return Object.hasOwn(byName, name) ? byName[name as RoleName] : undefined;
}

export async function whoAmI(api: Api): Promise<Me> {
  const { user, role, credential } = await api.auth.whoAmI({});
  return { id: user?.id ?? '', email: user?.email ?? '', name: user?.name ?? '', role: roleName(role), credential };
}

export function userLabel(user: Pick<User, 'name' | 'email' | 'id'>): string {
  return user.name || user.email || user.id;
}
