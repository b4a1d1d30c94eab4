import type { ExecutionStatus, NodeStatus, WorkflowEdgeSpec, WorkflowNodeSpec } from '../store/schema.ts';
import { parentsOf } from './graph.ts';

export interface Graph {
  readonly nodes: readonly WorkflowNodeSpec[];
  readonly edges: readonly WorkflowEdgeSpec[];
}

export interface NodeState {
  readonly status: NodeStatus;
  readonly output: unknown;
  readonly condition: boolean | null;
}

export type Step = { readonly nodeId: string; readonly action: 'run'; readonly input: unknown } | { readonly nodeId: string; readonly action: 'skip' };

const FINISHED: readonly NodeStatus[] = ['succeeded', 'failed', 'skipped', 'cancelled'];

/** Whether an edge fires, given its parent's finished state. A parent that did not run (skipped, cancelled) fires nothing. */
export function edgeFires(edge: WorkflowEdgeSpec, parent: NodeState): boolean {
  if (parent.status !== 'succeeded' && parent.status !== 'failed') return false;
  switch (edge.type) {
    case 'always':
      return true;
    case 'on_success':
      return parent.status === 'succeeded';
    case 'on_failure':
      return parent.status === 'failed';
    case 'on_condition':
      return parent.condition === true;
  }
}

/**
 * What to do next: every pending node whose parents have all finished either
 * runs (at least one incoming edge fired) or is skipped. Skips cascade within
 * one call; runs are returned for the caller to start. Roots take the
 * execution's input; a child of one parent takes that parent's output, a
 * child of several an object keyed by parent node id.
 */
export function nextSteps(graph: Graph, states: ReadonlyMap<string, NodeState>, rootInput: unknown): Step[] {
  const current = new Map(states);
  const steps: Step[] = [];
  let changed = true;
  while (changed) {
    changed = false;
    for (const node of graph.nodes) {
      if (current.get(node.id)?.status !== 'pending') continue;
      const parents = parentsOf(node.id, graph.edges);
      if (parents.length === 0) {
        steps.push({ nodeId: node.id, action: 'run', input: rootInput });
        current.set(node.id, { status: 'running', output: null, condition: null });
        continue;
      }
      if (!parents.every((parent) => FINISHED.includes(current.get(parent)!.status))) continue;
      const fired = graph.edges.some((edge) => edge.to === node.id && edgeFires(edge, current.get(edge.from)!));
      if (fired) {
        const input = parents.length === 1 ? (current.get(parents[0]!)!.output ?? null) : Object.fromEntries(parents.map((parent) => [parent, current.get(parent)!.output ?? null]));
        steps.push({ nodeId: node.id, action: 'run', input });
        current.set(node.id, { status: 'running', output: null, condition: null });
      } else {
        steps.push({ nodeId: node.id, action: 'skip' });
        current.set(node.id, { status: 'skipped', output: null, condition: null });
        changed = true;
      }
    }
  }
  return steps;
}

/**
 * How an execution ended, or undefined while a node is pending or running.
 * CANCELLED when a cancel was asked for or a node's run was cancelled; FAILED
 * when a node failed and no ON_FAILURE edge leaves it (a failure with an
 * ON_FAILURE edge is handled, even if that edge's child is what then fails:
 * the child's own failure counts by the same rule); else SUCCEEDED.
 */
export function executionOutcome(graph: Graph, states: ReadonlyMap<string, NodeState>, cancelRequested: boolean): ExecutionStatus | undefined {
  const all = graph.nodes.map((node) => ({ id: node.id, status: states.get(node.id)!.status }));
  if (all.some((node) => node.status === 'pending' || node.status === 'running')) return undefined;
  if (cancelRequested || all.some((node) => node.status === 'cancelled')) return 'cancelled';
  const unhandled = all.some((node) => node.status === 'failed' && !graph.edges.some((edge) => edge.from === node.id && edge.type === 'on_failure'));
  return unhandled ? 'failed' : 'succeeded';
}
