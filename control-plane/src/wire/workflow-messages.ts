import { create } from '@bufbuild/protobuf';
import {
  EdgeType,
  ExecutionSchema,
  ExecutionStatus,
  NodeStatus,
  WorkflowSchema,
  WorkflowStatus,
  type Execution,
  type Workflow,
} from '@cronium/proto/api/v1/workflow';
import type {
  EdgeType as EdgeTypeName,
  ExecutionRow,
  ExecutionStatus as ExecutionStatusName,
  NodeRunRow,
  NodeStatus as NodeStatusName,
  WorkflowRow,
  WorkflowStatus as WorkflowStatusName,
} from '../store/schema.ts';
import { jsonValue, scheduleToProto, time } from './api-messages.ts';
import { webhookToProto } from './webhook-messages.ts';

export const edgeTypes: Record<EdgeTypeName, EdgeType> = {
  always: EdgeType.ALWAYS,
  on_success: EdgeType.ON_SUCCESS,
  on_failure: EdgeType.ON_FAILURE,
  on_condition: EdgeType.ON_CONDITION,
};
export const workflowStatuses: Record<WorkflowStatusName, WorkflowStatus> = {
  active: WorkflowStatus.ACTIVE,
  paused: WorkflowStatus.PAUSED,
};
const executionStatuses: Record<ExecutionStatusName, ExecutionStatus> = {
  running: ExecutionStatus.RUNNING,
  succeeded: ExecutionStatus.SUCCEEDED,
  failed: ExecutionStatus.FAILED,
  cancelled: ExecutionStatus.CANCELLED,
};
const nodeStatuses: Record<NodeStatusName, NodeStatus> = {
  pending: NodeStatus.PENDING,
  running: NodeStatus.RUNNING,
  succeeded: NodeStatus.SUCCEEDED,
  failed: NodeStatus.FAILED,
  skipped: NodeStatus.SKIPPED,
  cancelled: NodeStatus.CANCELLED,
};

export function workflowToProto(row: WorkflowRow, secret = ''): Workflow {
  return create(WorkflowSchema, {
    id: row.id,
    name: row.name,
    description: row.description,
    status: workflowStatuses[row.status],
    nodes: row.nodes.map((node) => ({ id: node.id, eventId: node.eventId, name: node.name })),
    edges: row.edges.map((edge) => ({ from: edge.from, to: edge.to, type: edgeTypes[edge.type] })),
    triggers: { manual: true, webhook: webhookToProto('workflows', row.webhook_key, secret), schedule: row.schedule ? scheduleToProto(row.schedule) : undefined },
    createdAt: time(row.created_at),
    updatedAt: time(row.updated_at),
  });
}

/** Nodes in the order of the workflow's graph. */
export function executionToProto(row: ExecutionRow, nodes: readonly NodeRunRow[]): Execution {
  const byId = new Map(nodes.map((node) => [node.node_id, node]));
  return create(ExecutionSchema, {
    id: row.id,
    workflowId: row.workflow_id,
    status: executionStatuses[row.status],
    input: jsonValue(row.input),
    createdAt: time(row.created_at),
    finishedAt: time(row.finished_at),
    trigger: row.trigger,
    nodes: row.nodes.flatMap((spec) => {
      const node = byId.get(spec.id);
      if (!node) return [];
      return [
        {
          nodeId: node.node_id,
          eventId: node.event_id,
          status: nodeStatuses[node.status],
          runId: node.run_id ?? '',
          input: jsonValue(node.input),
          output: jsonValue(node.output),
          condition: node.condition ?? undefined,
          error: node.error,
          startedAt: time(node.started_at),
          finishedAt: time(node.finished_at),
        },
      ];
    }),
  });
}
