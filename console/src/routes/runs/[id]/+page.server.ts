import { redirect } from '@sveltejs/kit';
import { runView } from '#lib/views.ts';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, params }) => {
  const { run } = await locals.api.runs.getRun({ id: params.id });
  // A run of one job (the common case) is that job's page.
  if (run!.jobs.length === 1) redirect(303, `/jobs/${run!.jobs[0]!.id}`);
  const { event } = await locals.api.events.getEvent({ id: run!.eventId });
  return { run: runView(run!), eventName: event?.name ?? run!.eventId };
};
