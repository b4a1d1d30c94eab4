// Who is signed in, as pages see it, and what their role lets them do. The
// API decides; these only keep buttons away from those it would refuse.

export type RoleName = 'admin' | 'user' | 'viewer';

export interface Me {
  readonly id: string;
  readonly email: string;
  readonly name: string;
  /** The role this session has: the user's, or a lower one an API token was made with. */
  readonly role: RoleName;
  /** `session` (email and password) or `token` (an API token). */
  readonly credential: string;
}

export const roleNames: readonly RoleName[] = ['admin', 'user', 'viewer'];

/** Admins and users change things; viewers only look. */
export function canChange(me: Me | null | undefined): boolean {
  return me?.role === 'admin' || me?.role === 'user';
}

export function isAdmin(me: Me | null | undefined): boolean {
  return me?.role === 'admin';
}
