import { create } from '@bufbuild/protobuf';
import { WebhookSchema } from '@cronium/proto/api/v1/webhook';
import { WorkflowTriggersSchema } from '@cronium/proto/api/v1/workflow';
import { redirect } from '@sveltejs/kit';
import { attempt } from '#lib/server/forms.ts';
import { jsonInput } from '#lib/server/json-input.ts';
import { workflowFromForm } from '#lib/server/workflow-form.ts';
import { executionView, workflowView } from '#lib/workflow-views.ts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, params }) => {
  const [{ workflow }, { events }, { executions }] = await Promise.all([
    locals.api.workflows.getWorkflow({ id: params.id }),
    locals.api.events.listEvents({}),
    locals.api.workflows.listExecutions({ workflowId: params.id, pageSize: 10 }),
  ]);
  return {
    workflow: workflowView(workflow!),
    eventChoices: events.map((e) => ({ id: e.id, name: e.name })),
    executions: executions.map(executionView),
  };
};

export const actions: Actions = {
  save: async ({ request, locals, params }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { workflow } = await locals.api.workflows.getWorkflow({ id: params.id });
      await locals.api.workflows.updateWorkflow({ workflow: workflowFromForm(form, workflow) });
      return { saved: true };
    });
  },
  run: async ({ request, locals, params }) => {
    const form = await request.formData();
    return attempt(async () => {
      const { execution } = await locals.api.workflows.runWorkflow({ id: params.id, input: jsonInput(form) });
      redirect(303, `/executions/${execution!.id}`);
    }, 'runError');
  },
  rotate: ({ locals, params }) =>
    attempt(async () => {
      const { workflow } = await locals.api.workflows.rotateWorkflowWebhook({ id: params.id });
      // The secret is in this answer only: shown once, never loaded again.
      return { webhookSecret: workflow!.triggers?.webhook?.secret ?? '', webhookPath: workflow!.triggers?.webhook?.path ?? '' };
    }, 'webhookError'),
  webhookOff: ({ locals, params }) =>
    attempt(async () => {
      const { workflow } = await locals.api.workflows.getWorkflow({ id: params.id });
      workflow!.triggers = create(WorkflowTriggersSchema, { webhook: create(WebhookSchema, { enabled: false }) });
      await locals.api.workflows.updateWorkflow({ workflow: workflow! });
      return { webhookOff: true };
    }, 'webhookError'),
  delete: ({ locals, params }) =>
    attempt(async () => {
      await locals.api.workflows.deleteWorkflow({ id: params.id });
      redirect(303, '/workflows');
    }),
};
