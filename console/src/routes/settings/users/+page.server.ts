import { fail } from '@sveltejs/kit';
import { roleNames } from '#lib/roles.ts';
import { userView } from '#lib/server/account-views.ts';
import { requireAdmin } from '#lib/server/admin.ts';
import { attempt } from '#lib/server/forms.ts';
import { roleFromName } from '#lib/server/whoami.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  requireAdmin(locals.me);
  const { users } = await locals.api.users.listUsers({});
  return { users: users.map(userView), roles: roleNames };
};

const field = (form: FormData, name: string) => String(form.get(name) ?? '');

export const actions: Actions = {
  create: async ({ request, locals }) => {
    const form = await request.formData();
    const role = roleFromName(field(form, 'role'));
    if (role === undefined) return fail(400, { error: 'Pick a role.' });
    return attempt(async () => {
      const { user } = await locals.api.users.createUser({ email: field(form, 'email').trim(), name: field(form, 'name').trim(), role, password: field(form, 'password') });
      return { done: `${user?.email} can now sign in.` };
    });
  },
  role: async ({ request, locals }) => {
    const form = await request.formData();
    const role = roleFromName(field(form, 'role'));
    if (role === undefined) return fail(400, { error: 'Pick a role.' });
    return attempt(async () => {
      const { user } = await locals.api.users.updateUser({ id: field(form, 'id'), role });
      return { done: `${user?.email} is now ${field(form, 'role')}.` };
    });
  },
  disable: async ({ request, locals }) => {
    const form = await request.formData();
    const disabled = field(form, 'disabled') === 'true';
    return attempt(async () => {
      const { user } = await locals.api.users.updateUser({ id: field(form, 'id'), disabled });
      return { done: disabled ? `${user?.email} is disabled and signed out everywhere.` : `${user?.email} can sign in again.` };
    });
  },
  password: async ({ request, locals }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { user } = await locals.api.users.updateUser({ id: field(form, 'id'), password: field(form, 'password') });
      return { done: `Password of ${user?.email} reset; they are signed out everywhere.` };
    });
  },
  delete: async ({ request, locals }) => {
    const form = await request.formData();
    return attempt(async () => {
      await locals.api.users.deleteUser({ id: field(form, 'id') });
      return { done: 'User deleted. Their tokens are revoked; what they made stays.' };
    });
  },
};
