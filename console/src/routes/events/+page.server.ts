import { eventView, runView } from '#lib/views.ts';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const { events } = await locals.api.events.listEvents({});
  // The last run of each event: one small page per event, in parallel.
  const lastRuns = await Promise.all(events.map((event) => locals.api.runs.listRuns({ eventId: event.id, pageSize: 1 })));
  return {
    events: events.map((event, i) => {
      const last = lastRuns[i]?.runs[0];
      return { ...eventView(event), lastRun: last ? runView(last) : null };
    }),
  };
};
