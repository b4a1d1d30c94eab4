import { attempt } from '#lib/server/forms.ts';
import { executionView, workflowView } from '#lib/workflow-views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, params }) => {
  const { execution } = await locals.api.workflows.getExecution({ id: params.id });
  const [{ workflow }, { events }] = await Promise.all([
    locals.api.workflows.getWorkflow({ id: execution!.workflowId }),
    locals.api.events.listEvents({}),
  ]);
  return {
    execution: executionView(execution!),
    workflow: workflowView(workflow!),
    eventNames: Object.fromEntries(events.map((e) => [e.id, e.name])),
  };
};

export const actions: Actions = {
  cancel: ({ locals, params }) =>
    attempt(async () => {
      await locals.api.workflows.cancelExecution({ id: params.id });
      return { cancelled: true };
    }),
};
