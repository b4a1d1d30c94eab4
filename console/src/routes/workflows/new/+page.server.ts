import { error, redirect } from '@sveltejs/kit';
import { canChange } from '#lib/roles.ts';
import { attempt } from '#lib/server/forms.ts';
import { workflowFromForm } from '#lib/server/workflow-form.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  if (!canChange(locals.me)) error(403, `Your role (${locals.me?.role}) does not let you create workflows.`);
  const { events } = await locals.api.events.listEvents({});
  return { eventChoices: events.map((e) => ({ id: e.id, name: e.name })) };
};

export const actions: Actions = {
  save: async ({ request, locals }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { workflow } = await locals.api.workflows.createWorkflow({ workflow: workflowFromForm(form) });
      redirect(303, `/workflows/${workflow!.id}?created=1`);
    });
  },
};
