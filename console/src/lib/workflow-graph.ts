// A workflow's graph as Svelte Flow nodes and edges, and back: a layered
// layout (the API stores no positions), and one look per edge type.
// Types only: this module also runs outside the browser (unit tests), where Svelte Flow's components cannot load.
import type { Edge, Node } from '@xyflow/svelte';
import type { EdgeTypeName, WorkflowEdgeView, WorkflowNodeView } from './workflow-views.ts';

export interface EventNodeData extends Record<string, unknown> {
  label: string;
  eventId: string;
  eventName: string;
  status?: string;
  runId?: string;
  error?: string;
}

export type FlowNode = Node<EventNodeData, 'event'>;
export type FlowEdge = Edge<{ type: EdgeTypeName }>;

export const edgeLooks: Record<EdgeTypeName, { label: string; color: string; dash: string }> = {
  ALWAYS: { label: 'always', color: '#64748b', dash: '' },
  ON_SUCCESS: { label: 'on success', color: '#16a34a', dash: '' },
  ON_FAILURE: { label: 'on failure', color: '#dc2626', dash: '6 4' },
  ON_CONDITION: { label: 'on condition', color: '#d97706', dash: '2 4' },
};

export function flowEdge(from: string, to: string, type: EdgeTypeName): FlowEdge {
  const look = edgeLooks[type];
  return {
    id: `${from}->${to}:${type}`,
    source: from,
    target: to,
    data: { type },
    label: look.label,
    labelStyle: `color: ${look.color}; font-weight: 600;`,
    style: `stroke: ${look.color}; stroke-width: 2;${look.dash ? ` stroke-dasharray: ${look.dash};` : ''}`,
    markerEnd: { type: 'arrowclosed', color: look.color },
    class: `edge-${type.toLowerCase().replace('_', '-')}`,
  };
}

/** Columns by longest path from a root; rows in the order nodes were listed. */
export function layout(nodes: readonly WorkflowNodeView[], edges: readonly WorkflowEdgeView[]): Map<string, { x: number; y: number }> {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  // At most |nodes| relaxation passes: enough for any acyclic graph, and it stops on a cycle too.
  for (let pass = 0; pass < nodes.length; pass++) {
    let changed = false;
    for (const e of edges) {
      const next = (depth.get(e.from) ?? 0) + 1;
      if (depth.has(e.to) && next > depth.get(e.to)! && next < nodes.length) {
        depth.set(e.to, next);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const rows = new Map<number, number>();
  const positions = new Map<string, { x: number; y: number }>();
  for (const n of nodes) {
    const column = depth.get(n.id) ?? 0;
    const row = rows.get(column) ?? 0;
    rows.set(column, row + 1);
    positions.set(n.id, { x: column * 240, y: row * 110 });
  }
  return positions;
}

export function toFlow(
  nodes: readonly WorkflowNodeView[],
  edges: readonly WorkflowEdgeView[],
  eventNames: ReadonlyMap<string, string>,
): { nodes: FlowNode[]; edges: FlowEdge[] } {
  const positions = layout(nodes, edges);
  return {
    nodes: nodes.map((n) => ({
      id: n.id,
      type: 'event',
      position: positions.get(n.id) ?? { x: 0, y: 0 },
      data: { label: n.name || n.id, eventId: n.eventId, eventName: eventNames.get(n.eventId) ?? n.eventId },
    })),
    edges: edges.map((e) => flowEdge(e.from, e.to, e.type)),
  };
}

export function fromFlow(nodes: readonly FlowNode[], edges: readonly FlowEdge[]): { nodes: WorkflowNodeView[]; edges: WorkflowEdgeView[] } {
  return {
    nodes: nodes.map((n) => ({ id: n.id, eventId: n.data.eventId, name: n.data.label === n.id ? '' : n.data.label })),
    edges: edges.map((e) => ({ from: e.source, to: e.target, type: e.data?.type ?? 'ALWAYS' })),
  };
}

/** A node id from an event name: letters, digits, '_' and '-', unique among `taken`. */
export function nodeIdFor(name: string, taken: ReadonlySet<string>): string {
  const base = name.toLowerCase().replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 56) || 'node';
  let id = base;
  for (let i = 2; taken.has(id); i++) id = `${base}-${i}`;
  return id;
}
