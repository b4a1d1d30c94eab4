import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { fail } from '@sveltejs/kit';
import { isAdmin, roleNames } from '#lib/roles.ts';
import { tokenView } from '#lib/server/account-views.ts';
import { attempt } from '#lib/server/forms.ts';
import { roleFromName, userLabel } from '#lib/server/whoami.ts';
import type { Actions, PageServerLoad } from './$types';

/** Lifetimes offered for a new token, in days; 0 never expires. */
const lifetimes = [0, 7, 30, 90, 365];

export const load: PageServerLoad = async ({ locals }) => {
  const admin = isAdmin(locals.me);
  const [{ tokens }, owners] = await Promise.all([
    locals.api.tokens.listTokens({}),
    // Admins see everyone's tokens: name their owners.
    admin ? locals.api.users.listUsers({}).then(({ users }) => Object.fromEntries(users.map((u) => [u.id, userLabel(u)]))) : Promise.resolve(null),
  ]);
  const mine = roleNames.indexOf(locals.me?.role ?? 'viewer');
  return {
    tokens: tokens.map(tokenView),
    owners,
    // A token's role is at most the caller's.
    roles: roleNames.slice(mine),
    lifetimes,
  };
};

export const actions: Actions = {
  create: async ({ request, locals }) => {
    const form = await request.formData();
    const name = String(form.get('name') ?? '').trim();
    if (!name) return fail(400, { error: 'Give the token a name, e.g. where it is used.' });
    const days = Number(form.get('days') ?? 0);
    if (!lifetimes.includes(days)) return fail(400, { error: 'Pick a lifetime from the list.' });
    const role = roleFromName(String(form.get('role') ?? ''));
    return attempt(async () => {
      const { token, secret } = await locals.api.tokens.createToken({
        name,
        role,
        expiresAt: days ? timestampFromDate(new Date(Date.now() + days * 86_400_000)) : undefined,
      });
      // The secret is in this answer only: it is not kept by the console nor shown again.
      return { created: { name: token?.name ?? name, secret } };
    });
  },
  revoke: async ({ request, locals }) => {
    const id = String((await request.formData()).get('id') ?? '');
    return attempt(async () => {
      const { token } = await locals.api.tokens.revokeToken({ id });
      return { done: `Token ${token?.name ?? id} revoked.` };
    });
  },
};
