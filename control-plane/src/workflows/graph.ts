import type { WorkflowEdgeSpec, WorkflowNodeSpec } from '../store/schema.ts';

export const MAX_NODES = 200;
export const MAX_EDGES = 1000;
const NODE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** What is wrong with a graph, named by its field in the request (e.g. `workflow.edges[2]`). */
export interface GraphProblem {
  readonly field: string;
  readonly problem: string;
}

/**
 * Checks the shape of a workflow's graph: node ids well-formed and unique,
 * edge endpoints that exist, no edge twice, and no cycle. Whether the events
 * exist is for the caller (it needs the store).
 */
export function graphProblem(nodes: readonly WorkflowNodeSpec[], edges: readonly WorkflowEdgeSpec[]): GraphProblem | undefined {
  if (nodes.length === 0) return { field: 'workflow.nodes', problem: 'at least one node' };
  if (nodes.length > MAX_NODES) return { field: 'workflow.nodes', problem: `at most ${MAX_NODES} nodes` };
  if (edges.length > MAX_EDGES) return { field: 'workflow.edges', problem: `at most ${MAX_EDGES} edges` };
  const ids = new Set<string>();
  for (const [i, node] of nodes.entries()) {
    if (!NODE_ID.test(node.id)) return { field: `workflow.nodes[${i}].id`, problem: 'required: 1 to 64 letters, digits, "_" or "-"' };
    if (ids.has(node.id)) return { field: `workflow.nodes[${i}].id`, problem: `${JSON.stringify(node.id)} is used by another node` };
    ids.add(node.id);
  }
  const seen = new Set<string>();
  for (const [i, edge] of edges.entries()) {
    if (!ids.has(edge.from)) return { field: `workflow.edges[${i}].from`, problem: `no node ${JSON.stringify(edge.from)}` };
    if (!ids.has(edge.to)) return { field: `workflow.edges[${i}].to`, problem: `no node ${JSON.stringify(edge.to)}` };
    const key = JSON.stringify([edge.from, edge.to, edge.type]);
    if (seen.has(key)) return { field: `workflow.edges[${i}]`, problem: `${edge.from} → ${edge.to} (${edge.type}) is listed twice` };
    seen.add(key);
  }
  const cycle = cycleEdge(nodes, edges);
  if (cycle) return { field: `workflow.edges[${cycle.index}]`, problem: `${cycle.edge.from} → ${cycle.edge.to} closes a cycle: ${cycle.path.join(' → ')}` };
  return undefined;
}

/** The first edge (depth-first from each node in order) that leads back to a node on the current path. */
function cycleEdge(nodes: readonly WorkflowNodeSpec[], edges: readonly WorkflowEdgeSpec[]) {
  const outgoing = new Map<string, { edge: WorkflowEdgeSpec; index: number }[]>(nodes.map((node) => [node.id, []]));
  for (const [index, edge] of edges.entries()) outgoing.get(edge.from)!.push({ edge, index });
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (id: string): { edge: WorkflowEdgeSpec; index: number; path: string[] } | undefined => {
    state.set(id, 'open');
    path.push(id);
    for (const out of outgoing.get(id)!) {
      const next = state.get(out.edge.to);
      if (next === 'open') return { ...out, path: [...path.slice(path.indexOf(out.edge.to)), out.edge.to] };
      if (next === undefined) {
        const found = visit(out.edge.to);
        if (found) return found;
      }
    }
    path.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const node of nodes) {
    if (state.has(node.id)) continue;
    const found = visit(node.id);
    if (found) return found;
  }
  return undefined;
}

/** The nodes an edge leads into `id` from, in the order of the edges, each once. */
export function parentsOf(id: string, edges: readonly WorkflowEdgeSpec[]): string[] {
  return [...new Set(edges.filter((edge) => edge.to === id).map((edge) => edge.from))];
}
