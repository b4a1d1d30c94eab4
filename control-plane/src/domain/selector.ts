import type { LabelTerm, Selector } from '../store/schema.ts';

export interface AgentCandidate {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly executors: readonly string[];
  readonly freeSlots: number;
}

export const EMPTY_SELECTOR: Selector = { required: [], preferred: [], count: 0, all: false };

export function termMatches(term: LabelTerm, labels: Readonly<Record<string, string>>): boolean {
  const value = labels[term.key];
  switch (term.op) {
    case 'exists':
      return value !== undefined;
    case 'eq':
      return value !== undefined && value === term.values[0];
    case 'ne':
      return value === undefined || value !== term.values[0];
    case 'in':
      return value !== undefined && term.values.includes(value);
    case 'gt':
    case 'lt': {
      const limit = Number(term.values[0]);
      const actual = Number(value);
      if (value === undefined || value.trim() === '' || !Number.isFinite(actual)) return false;
      return term.op === 'gt' ? actual > limit : actual < limit;
    }
  }
}

export function selectorMatches(selector: Selector, labels: Readonly<Record<string, string>>): boolean {
  return selector.required.every((term) => termMatches(term, labels));
}

export function preferenceScore(selector: Selector, labels: Readonly<Record<string, string>>): number {
  let score = 0;
  for (const { term, weight } of selector.preferred) if (termMatches(term, labels)) score += weight;
  return score;
}

/**
 * The agent a job should go to: it must match every required term and have the
 * executor; among those, the highest preference score wins, then the most free slots.
 */
export function pickAgent<A extends AgentCandidate>(
  selector: Selector,
  executor: string,
  agents: Iterable<A>,
): A | undefined {
  let best: A | undefined;
  let bestScore = -Infinity;
  for (const agent of agents) {
    if (agent.freeSlots <= 0 || !agent.executors.includes(executor)) continue;
    if (!selectorMatches(selector, agent.labels)) continue;
    const score = preferenceScore(selector, agent.labels);
    if (score > bestScore || (score === bestScore && best && agent.freeSlots > best.freeSlots)) {
      best = agent;
      bestScore = score;
    }
  }
  return best;
}

/** Validates a term's shape; returns an error message naming what is wrong, or undefined. */
export function termError(term: LabelTerm): string | undefined {
  if (!term.key) return 'key: required';
  if (term.op === 'exists') return undefined;
  if (term.op === 'in') return term.values.length > 0 ? undefined : 'values: at least one value required for op in';
  if (term.values.length !== 1) return `values: exactly one value required for op ${term.op}`;
  if ((term.op === 'gt' || term.op === 'lt') && !Number.isFinite(Number(term.values[0]))) {
    return `values: op ${term.op} needs a number`;
  }
  return undefined;
}
