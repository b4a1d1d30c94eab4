import { WorkflowStatus, type Workflow } from '@cronium/proto/api/v1/workflow';
import type { Db } from '../store/database.ts';
import type { WorkflowEdgeSpec, WorkflowNodeSpec, WorkflowRow, WorkflowStatus as WorkflowStatusName } from '../store/schema.ts';
import { scheduleSpec } from './event-input.ts';
import { edgeTypes, workflowStatuses } from '../wire/workflow-messages.ts';
import { reverse } from '../wire/api-messages.ts';
import { graphProblem } from '../workflows/graph.ts';
import { invalid } from './errors.ts';

const edgeTypeNames = reverse(edgeTypes);
const statusNames = reverse(workflowStatuses);

export interface WorkflowFields {
  readonly name: string;
  readonly description: string;
  readonly status: WorkflowStatusName;
  readonly nodes: WorkflowNodeSpec[];
  readonly edges: WorkflowEdgeSpec[];
  readonly webhook: boolean;
  /** JSON of the schedule trigger (or null), as the column takes it. */
  readonly schedule: string;
}

/** Checks a workflow from the API (graph shape, and that every node's event exists and belongs to the owner); every error names its field. */
export async function workflowFields(db: Db, ownerId: string, workflow: Workflow | undefined, previous?: WorkflowRow): Promise<WorkflowFields> {
  if (!workflow) throw invalid('workflow', 'required');
  const name = workflow.name.trim();
  if (!name) throw invalid('workflow.name', 'required');
  if (name.length > 200) throw invalid('workflow.name', 'at most 200 characters');
  const status: WorkflowStatusName = workflow.status === WorkflowStatus.UNSPECIFIED ? 'active' : statusNames.get(workflow.status)!;
  const nodes = workflow.nodes.map((node, i) => {
    if (!node.eventId) throw invalid(`workflow.nodes[${i}].eventId`, 'required');
    return { id: node.id, eventId: node.eventId, name: node.name.trim() };
  });
  const edges = workflow.edges.map((edge, i) => {
    const type = edgeTypeNames.get(edge.type);
    if (!type) throw invalid(`workflow.edges[${i}].type`, 'required: one of EDGE_TYPE_ALWAYS, EDGE_TYPE_ON_SUCCESS, EDGE_TYPE_ON_FAILURE, EDGE_TYPE_ON_CONDITION');
    return { from: edge.from, to: edge.to, type };
  });
  const problem = graphProblem(nodes, edges);
  if (problem) throw invalid(problem.field, problem.problem);
  const eventIds = [...new Set(nodes.map((node) => node.eventId))];
  const found = new Set(
    (await db.selectFrom('events').select('id').where('id', 'in', eventIds).where('owner_id', '=', ownerId).where('deleted_at', 'is', null).execute()).map((row) => row.id),
  );
  const missing = nodes.findIndex((node) => !found.has(node.eventId));
  if (missing >= 0) throw invalid(`workflow.nodes[${missing}].eventId`, `event ${JSON.stringify(nodes[missing]!.eventId)} not found`);
  const schedule = scheduleSpec(workflow.triggers?.schedule, 'workflow.triggers.schedule', previous?.schedule);
  return { name, description: workflow.description, status, nodes, edges, webhook: workflow.triggers?.webhook?.enabled ?? false, schedule: JSON.stringify(schedule) };
}
