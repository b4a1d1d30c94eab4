// The workflow editor's form → the API's Workflow message (the graph comes as
// JSON from the canvas); the webhook setting is kept as stored.
import { create } from '@bufbuild/protobuf';
import { EdgeType, WorkflowEdgeSchema, WorkflowNodeSchema, WorkflowSchema, WorkflowStatus, type Workflow } from '@cronium/proto/api/v1/workflow';
import { FormError } from './event-form.ts';
import type { WorkflowEdgeView, WorkflowNodeView } from '#lib/workflow-views.ts';

export function workflowFromForm(form: FormData, base?: Workflow): Workflow {
  const workflow = base ?? create(WorkflowSchema, {});
  workflow.name = String(form.get('name') ?? '').trim();
  workflow.description = String(form.get('description') ?? '').trim();
  workflow.status = form.get('status') === 'PAUSED' ? WorkflowStatus.PAUSED : WorkflowStatus.ACTIVE;
  let graph: { nodes: WorkflowNodeView[]; edges: WorkflowEdgeView[] };
  try {
    graph = JSON.parse(String(form.get('graph') || '{"nodes":[],"edges":[]}'));
  } catch {
    throw new FormError('The graph could not be read; reload the page');
  }
  workflow.nodes = graph.nodes.map((n) => create(WorkflowNodeSchema, { id: n.id, eventId: n.eventId, name: n.name }));
  workflow.edges = graph.edges.map((e) => create(WorkflowEdgeSchema, { from: e.from, to: e.to, type: EdgeType[e.type] ?? EdgeType.ALWAYS }));
  return workflow;
}
