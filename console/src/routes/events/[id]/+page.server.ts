import type { Value } from '@bufbuild/protobuf/wkt';
import { fail, redirect } from '@sveltejs/kit';
import { eventFromForm } from '#lib/server/event-form.ts';
import { attempt } from '#lib/server/forms.ts';
import { jsonInput } from '#lib/server/json-input.ts';
import { eventFormData } from '#lib/server/event-form-data.ts';
import { eventView, fireView, runView } from '#lib/views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, params }) => {
  const [{ event }, formData, { runs }, { fires }] = await Promise.all([
    locals.api.events.getEvent({ id: params.id }),
    eventFormData(locals.api, locals.me),
    locals.api.runs.listRuns({ eventId: params.id, pageSize: 10 }),
    locals.api.events.listScheduleFires({ eventId: params.id, pageSize: 10 }),
  ]);
  return { event: eventView(event!), ...formData, runs: runs.map(runView), fires: fires.map(fireView) };
};

export const actions: Actions = {
  save: async ({ request, locals, params }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { event } = await locals.api.events.getEvent({ id: params.id });
      await locals.api.events.updateEvent({ event: eventFromForm(form, event) });
      return { saved: true };
    });
  },
  run: async ({ request, locals, params }) => {
    let input: Value | undefined;
    try {
      input = jsonInput(await request.formData());
    } catch (error) {
      return fail(400, { runError: (error as Error).message });
    }
    return attempt(async () => {
      const { run } = await locals.api.events.runEvent({ id: params.id, input });
      redirect(303, `/runs/${run!.id}`);
    });
  },
  rotate: ({ locals, params }) =>
    attempt(async () => {
      const { event } = await locals.api.events.rotateEventWebhook({ id: params.id });
      // The secret is in this answer only: shown once, never loaded again.
      return { webhookSecret: event!.webhook?.secret ?? '', webhookPath: event!.webhook?.path ?? '' };
    }, 'webhookError'),
  webhookOff: ({ locals, params }) =>
    attempt(async () => {
      await locals.api.events.disableEventWebhook({ id: params.id });
      return { webhookOff: true };
    }, 'webhookError'),
  delete: async ({ locals, params }) => {
    return attempt(async () => {
      await locals.api.events.deleteEvent({ id: params.id });
      redirect(303, '/events');
    });
  },
};

