import { workflowView } from '#lib/workflow-views.ts';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const { workflows } = await locals.api.workflows.listWorkflows({});
  return { workflows: workflows.map(workflowView) };
};
