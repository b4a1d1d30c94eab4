// The workflow editor's graph helpers: the layered layout, the round trip
// between the API's graph and Svelte Flow's, node ids from event names, and
// one look per edge type.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { edgeLooks, flowEdge, fromFlow, layout, nodeIdFor, toFlow } from '../src/lib/workflow-graph.ts';
import { edgeTypes, type WorkflowEdgeView, type WorkflowNodeView } from '../src/lib/workflow-views.ts';

const nodes: WorkflowNodeView[] = [
  { id: 'build', eventId: 'e1', name: '' },
  { id: 'test', eventId: 'e2', name: 'Unit tests' },
  { id: 'ship', eventId: 'e3', name: '' },
  { id: 'page', eventId: 'e4', name: '' },
];
const edges: WorkflowEdgeView[] = [
  { from: 'build', to: 'test', type: 'ON_SUCCESS' },
  { from: 'test', to: 'ship', type: 'ON_CONDITION' },
  { from: 'build', to: 'ship', type: 'ALWAYS' },
  { from: 'test', to: 'page', type: 'ON_FAILURE' },
];

test('nodes are laid out in columns by their longest path from a root', () => {
  const at = layout(nodes, edges);
  assert.deepEqual([...at.entries()].map(([id, p]) => [id, p.x / 240, p.y / 110]), [['build', 0, 0], ['test', 1, 0], ['ship', 2, 0], ['page', 2, 1]]);
  // A cycle (refused by the API on save) still gets a layout, and no endless loop.
  const cyclic = layout(nodes.slice(0, 2), [{ from: 'build', to: 'test', type: 'ALWAYS' }, { from: 'test', to: 'build', type: 'ALWAYS' }]);
  assert.equal(cyclic.size, 2);
});

test('the graph goes to Svelte Flow and back unchanged', () => {
  const flow = toFlow(nodes, edges, new Map([['e1', 'build-event']]));
  assert.equal(flow.nodes[0]!.data.eventName, 'build-event');
  assert.equal(flow.nodes[1]!.data.label, 'Unit tests');
  assert.equal(flow.nodes[2]!.data.eventName, 'e3', 'an unknown event shows its id');
  assert.deepEqual(fromFlow(flow.nodes, flow.edges), { nodes, edges });
});

test('each edge type looks different, and an edge id names its ends and type', () => {
  const looks = edgeTypes.map((type) => `${edgeLooks[type].color}|${edgeLooks[type].dash}`);
  assert.equal(new Set(looks).size, edgeTypes.length);
  const edge = flowEdge('a', 'b', 'ON_FAILURE');
  assert.equal(edge.id, 'a->b:ON_FAILURE');
  assert.match(String(edge.style), /stroke-dasharray/);
  assert.equal(edge.label, 'on failure');
});

test('node ids come from event names: allowed characters only, unique', () => {
  assert.equal(nodeIdFor('Nightly Backup (DB)', new Set()), 'nightly-backup-db');
  assert.equal(nodeIdFor('build', new Set(['build', 'build-2'])), 'build-3');
  assert.equal(nodeIdFor('***', new Set()), 'node');
});
