import { runView } from '#lib/views.ts';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, url }) => {
  const pageToken = url.searchParams.get('page') ?? '';
  const eventId = url.searchParams.get('event') ?? '';
  const [{ runs, nextPageToken }, { events }] = await Promise.all([
    locals.api.runs.listRuns({ pageSize: 50, pageToken, eventId }),
    locals.api.events.listEvents({}),
  ]);
  const names = Object.fromEntries(events.map((event) => [event.id, event.name]));
  return { runs: runs.map(runView), names, nextPageToken, eventId };
};
