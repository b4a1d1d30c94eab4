import { timestampDate } from '@bufbuild/protobuf/wkt';
import { attempt } from '#lib/server/forms.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const { variables } = await locals.api.variables.listVariables({});
  return {
    // A secret's value never comes back from the API; nothing to hide here but its absence.
    variables: variables.map((v) => ({ key: v.key, value: v.secret ? '' : v.value, secret: v.secret, updatedAt: v.updatedAt ? timestampDate(v.updatedAt).toISOString() : null })),
  };
};

export const actions: Actions = {
  set: async ({ request, locals }) => {
    const form = await request.formData();
    const key = String(form.get('key') ?? '').trim();
    return attempt(async () => {
      await locals.api.variables.setVariable({ key, value: String(form.get('value') ?? ''), secret: form.get('secret') === 'on' });
      return { done: `${key} saved.` };
    });
  },
  delete: async ({ request, locals }) => {
    const key = String((await request.formData()).get('key') ?? '');
    return attempt(async () => {
      await locals.api.variables.deleteVariable({ key });
      return { done: `${key} deleted.` };
    });
  },
};
