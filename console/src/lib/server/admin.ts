import { error } from '@sveltejs/kit';
import { isAdmin, type Me } from '#lib/roles.ts';

/** Admin-only pages answer 403 to others before asking the API (which would refuse them too). */
export function requireAdmin(me: Me | undefined): void {
  if (!isAdmin(me)) error(403, 'This page is for admins.');
}
