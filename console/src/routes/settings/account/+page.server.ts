import { fail } from '@sveltejs/kit';
import { attempt } from '#lib/server/forms.ts';
import type { Actions } from './$types';

export const actions: Actions = {
  password: async ({ request, locals }) => {
    const form = await request.formData();
    const currentPassword = String(form.get('currentPassword') ?? '');
    const newPassword = String(form.get('newPassword') ?? '');
    if (newPassword !== String(form.get('repeatPassword') ?? '')) return fail(400, { error: 'The two new passwords differ.' });
    return attempt(async () => {
      await locals.api.users.changePassword({ currentPassword, newPassword });
      return { done: 'Password changed. Your other sessions are signed out.' };
    });
  },
};
