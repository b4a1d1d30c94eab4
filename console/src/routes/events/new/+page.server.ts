import { error, redirect } from '@sveltejs/kit';
import { eventFromForm } from '#lib/server/event-form.ts';
import { canChange } from '#lib/roles.ts';
import { attempt } from '#lib/server/forms.ts';
import { eventFormData } from '#lib/server/event-form-data.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = ({ locals }) => {
  if (!canChange(locals.me)) error(403, `Your role (${locals.me?.role}) does not let you create events.`);
  return eventFormData(locals.api, locals.me);
};

export const actions: Actions = {
  save: async ({ request, locals }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { event } = await locals.api.events.createEvent({ event: eventFromForm(form) });
      redirect(303, `/events/${event!.id}?created=1`);
    });
  },
};
