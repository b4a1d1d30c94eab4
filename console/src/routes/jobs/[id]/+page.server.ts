import { fromJson } from '@bufbuild/protobuf';
import { ValueSchema } from '@bufbuild/protobuf/wkt';
import { redirect } from '@sveltejs/kit';
import { attempt } from '#lib/server/forms.ts';
import { attemptView, jobView, runView } from '#lib/views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, params }) => {
  const { job } = await locals.api.jobs.getJob({ id: params.id });
  const [{ run }, { event }, { attempts }] = await Promise.all([
    locals.api.runs.getRun({ id: job!.runId }),
    locals.api.events.getEvent({ id: job!.eventId }),
    locals.api.jobs.listAttempts({ jobId: params.id }),
  ]);
  return { job: jobView(job!), run: runView(run!), eventName: event?.name ?? job!.eventId, attempts: attempts.map(attemptView) };
};

export const actions: Actions = {
  cancel: ({ locals, params }) =>
    attempt(async () => {
      await locals.api.jobs.cancelJob({ id: params.id });
      return { cancelled: true };
    }),
  rerun: ({ locals, params }) =>
    attempt(async () => {
      const { job } = await locals.api.jobs.getJob({ id: params.id });
      const { run } = await locals.api.runs.getRun({ id: job!.runId });
      const input = run?.input ? fromJson(ValueSchema, runView(run).input ?? null) : undefined;
      const { run: next } = await locals.api.events.runEvent({ id: job!.eventId, input });
      redirect(303, `/runs/${next!.id}`);
    }),
};
