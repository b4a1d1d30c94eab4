// How many agents a label selector reaches, by the scheduler's own match rules
// (control-plane/src/domain/selector.ts), for the event form's target picker.
import { selectorMatches } from '../../../control-plane/src/domain/selector.ts';
import type { LabelOp } from '../../../control-plane/src/store/schema.ts';
import type { AgentView, TermView } from './views.ts';

export interface MatchCount {
  matching: number;
  online: number;
  total: number;
  /** Not revoked, but without the executor. */
  lacking: number;
}

/** The executor a selector-targeted job of this event type needs (as queue/claim.ts executorFor decides). */
export function executorFor(type: string): string {
  return type === 'HTTP' ? 'http' : 'docker';
}

/** Agents that are not revoked, have the executor the event type needs, and match every term. */
export function matchingAgents(agents: readonly AgentView[], terms: readonly TermView[], type: string): MatchCount {
  const required = terms
    .filter((term) => term.key.trim())
    .map((term) => ({
      key: term.key.trim(),
      op: term.op.toLowerCase() as LabelOp,
      values: term.values.split(',').map((v) => v.trim()).filter(Boolean),
    }));
  const executor = executorFor(type);
  const live = agents.filter((agent) => agent.status !== 'revoked');
  const candidates = live.filter((agent) => agent.executors.includes(executor));
  const matched = candidates.filter((agent) => selectorMatches({ required, preferred: [], count: 0, all: false }, agent.labels));
  return { matching: matched.length, online: matched.filter((agent) => agent.status === 'online').length, total: candidates.length, lacking: live.length - candidates.length };
}
