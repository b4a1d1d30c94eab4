// Plain views of workflows and their executions (server loads and the
// browser's GetExecution polling share them).
import { toJson, type JsonValue } from '@bufbuild/protobuf';
import { timestampDate, ValueSchema, type Timestamp, type Value } from '@bufbuild/protobuf/wkt';
import { EdgeType, ExecutionStatus, NodeStatus, WorkflowStatus, type Execution, type Workflow } from '@cronium/proto/api/v1/workflow';

export const edgeTypes = ['ALWAYS', 'ON_SUCCESS', 'ON_FAILURE', 'ON_CONDITION'] as const;
export type EdgeTypeName = (typeof edgeTypes)[number];

export interface WorkflowNodeView { id: string; eventId: string; name: string }
export interface WorkflowEdgeView { from: string; to: string; type: EdgeTypeName }

export interface WorkflowView {
  id: string;
  name: string;
  description: string;
  status: 'ACTIVE' | 'PAUSED';
  nodes: WorkflowNodeView[];
  edges: WorkflowEdgeView[];
  webhook: { enabled: boolean; path: string; secret: string };
  updatedAt: string | null;
}

function iso(ts: Timestamp | undefined): string | null {
  return ts ? timestampDate(ts).toISOString() : null;
}

function json(value: Value | undefined): JsonValue | undefined {
  return value ? toJson(ValueSchema, value) : undefined;
}

const lower = (name: string | undefined) => (name ?? 'UNSPECIFIED').toLowerCase();

export function workflowView(workflow: Workflow): WorkflowView {
  const webhook = workflow.triggers?.webhook;
  return {
    id: workflow.id,
    name: workflow.name,
    description: workflow.description,
    status: workflow.status === WorkflowStatus.PAUSED ? 'PAUSED' : 'ACTIVE',
    nodes: workflow.nodes.map((n) => ({ id: n.id, eventId: n.eventId, name: n.name })),
    edges: workflow.edges.map((e) => ({ from: e.from, to: e.to, type: (EdgeType[e.type] ?? 'ALWAYS') as EdgeTypeName })),
    webhook: { enabled: Boolean(webhook?.enabled), path: webhook?.path ?? '', secret: webhook?.secret ?? '' },
    updatedAt: iso(workflow.updatedAt),
  };
}

export interface ExecutionNodeView {
  nodeId: string;
  eventId: string;
  status: string;
  runId: string;
  error: string;
  condition: boolean | null;
  output: JsonValue | undefined;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface ExecutionView {
  id: string;
  workflowId: string;
  status: string;
  finished: boolean;
  trigger: string;
  input: JsonValue | undefined;
  nodes: ExecutionNodeView[];
  createdAt: string | null;
  finishedAt: string | null;
}

export function executionView(execution: Execution): ExecutionView {
  return {
    id: execution.id,
    workflowId: execution.workflowId,
    status: lower(ExecutionStatus[execution.status]),
    finished: execution.status !== ExecutionStatus.RUNNING && execution.status !== ExecutionStatus.UNSPECIFIED,
    trigger: execution.trigger,
    input: json(execution.input),
    nodes: execution.nodes.map((n) => ({
      nodeId: n.nodeId,
      eventId: n.eventId,
      status: lower(NodeStatus[n.status]),
      runId: n.runId,
      error: n.error,
      condition: n.condition ?? null,
      output: json(n.output),
      startedAt: iso(n.startedAt),
      finishedAt: iso(n.finishedAt),
    })),
    createdAt: iso(execution.createdAt),
    finishedAt: iso(execution.finishedAt),
  };
}
