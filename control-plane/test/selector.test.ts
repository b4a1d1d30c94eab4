// Unit tests of label routing: term matching, agent choice and term validation.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  EMPTY_SELECTOR,
  pickAgent,
  preferenceScore,
  selectorMatches,
  termError,
  termMatches,
  type AgentCandidate,
} from '../src/domain/selector.ts';
import type { LabelOp, LabelTerm, Selector } from '../src/store/schema.ts';

function term(key: string, op: LabelOp, ...values: string[]): LabelTerm {
  return { key, op, values };
}

function selector(partial: Partial<Selector>): Selector {
  return { ...EMPTY_SELECTOR, ...partial };
}

function agent(id: string, labels: Record<string, string>, freeSlots = 1, executors: string[] = ['docker']): AgentCandidate {
  return { id, labels, executors, freeSlots };
}

describe('termMatches', () => {
  const labels = { zone: 'eu', tier: 'gold', cpus: '8', mem: 'lots', blank: '' };

  test('eq matches only the exact value of a present key', () => {
    assert.equal(termMatches(term('zone', 'eq', 'eu'), labels), true);
    assert.equal(termMatches(term('zone', 'eq', 'us'), labels), false);
    assert.equal(termMatches(term('zone', 'eq', 'EU'), labels), false, 'values are case-sensitive');
    assert.equal(termMatches(term('missing', 'eq', 'eu'), labels), false);
    assert.equal(termMatches(term('blank', 'eq', ''), labels), true, 'an empty label value is still a value');
  });

  test('ne matches a different value and a missing key', () => {
    assert.equal(termMatches(term('zone', 'ne', 'us'), labels), true);
    assert.equal(termMatches(term('zone', 'ne', 'eu'), labels), false);
    assert.equal(termMatches(term('missing', 'ne', 'eu'), labels), true);
  });

  test('in matches any of the listed values', () => {
    assert.equal(termMatches(term('zone', 'in', 'us', 'eu'), labels), true);
    assert.equal(termMatches(term('zone', 'in', 'us', 'ap'), labels), false);
    assert.equal(termMatches(term('missing', 'in', 'eu'), labels), false);
    assert.equal(termMatches(term('zone', 'in'), labels), false, 'an empty list matches nothing');
  });

  test('exists matches a present key whatever its value', () => {
    assert.equal(termMatches(term('zone', 'exists'), labels), true);
    assert.equal(termMatches(term('blank', 'exists'), labels), true);
    assert.equal(termMatches(term('missing', 'exists'), labels), false);
  });

  test('gt and lt compare numbers', () => {
    assert.equal(termMatches(term('cpus', 'gt', '4'), labels), true);
    assert.equal(termMatches(term('cpus', 'gt', '8'), labels), false, 'gt is strict');
    assert.equal(termMatches(term('cpus', 'gt', '16'), labels), false);
    assert.equal(termMatches(term('cpus', 'lt', '16'), labels), true);
    assert.equal(termMatches(term('cpus', 'lt', '8'), labels), false, 'lt is strict');
    assert.equal(termMatches(term('cpus', 'gt', '10'), { cpus: '9' }), false, 'numeric, not string, comparison');
    assert.equal(termMatches(term('cpus', 'lt', '10'), { cpus: '9' }), true, 'numeric, not string, comparison');
    assert.equal(termMatches(term('cpus', 'gt', '-1.5'), { cpus: '0.5' }), true);
  });

  test('gt and lt never match a non-numeric, empty or missing value', () => {
    for (const op of ['gt', 'lt'] as const) {
      assert.equal(termMatches(term('mem', op, '4'), labels), false, `${op} on a word`);
      assert.equal(termMatches(term('blank', op, '4'), labels), false, `${op} on an empty value (Number('') is 0)`);
      assert.equal(termMatches(term('blank', op, '4'), { blank: '   ' }), false, `${op} on blanks`);
      assert.equal(termMatches(term('missing', op, '4'), labels), false, `${op} on a missing key`);
      assert.equal(termMatches(term('cpus', op, 'many'), labels), false, `${op} against a non-numeric limit`);
      assert.equal(termMatches(term('x', op, '0'), { x: 'Infinity' }), false, `${op} on Infinity`);
    }
  });
});

describe('selectorMatches and preferenceScore', () => {
  test('every required term must match; no terms match everything', () => {
    const s = selector({ required: [term('zone', 'eq', 'eu'), term('cpus', 'gt', '2')] });
    assert.equal(selectorMatches(s, { zone: 'eu', cpus: '4' }), true);
    assert.equal(selectorMatches(s, { zone: 'eu', cpus: '1' }), false);
    assert.equal(selectorMatches(s, { zone: 'us', cpus: '4' }), false);
    assert.equal(selectorMatches(EMPTY_SELECTOR, {}), true);
  });

  test('preferred terms add their weights', () => {
    const s = selector({ preferred: [{ term: term('ssd', 'exists'), weight: 5 }, { term: term('zone', 'eq', 'eu'), weight: 2 }] });
    assert.equal(preferenceScore(s, {}), 0);
    assert.equal(preferenceScore(s, { zone: 'eu' }), 2);
    assert.equal(preferenceScore(s, { ssd: 'yes', zone: 'eu' }), 7);
  });
});

describe('pickAgent', () => {
  test('skips agents that miss a required term', () => {
    const s = selector({ required: [term('zone', 'eq', 'eu')] });
    const picked = pickAgent(s, 'docker', [agent('us', { zone: 'us' }, 9), agent('eu', { zone: 'eu' }, 1)]);
    assert.equal(picked?.id, 'eu');
    assert.equal(pickAgent(s, 'docker', [agent('us', { zone: 'us' })]), undefined);
  });

  test('the highest preference score wins over more free slots', () => {
    const s = selector({
      preferred: [
        { term: term('ssd', 'exists'), weight: 1 },
        { term: term('zone', 'eq', 'eu'), weight: 10 },
      ],
    });
    const picked = pickAgent(s, 'docker', [
      agent('ssd-only', { ssd: 'y' }, 50),
      agent('eu', { zone: 'eu' }, 1),
      agent('none', {}, 100),
    ]);
    assert.equal(picked?.id, 'eu');
    const both = pickAgent(s, 'docker', [agent('eu', { zone: 'eu' }, 1), agent('eu-ssd', { zone: 'eu', ssd: 'y' }, 1)]);
    assert.equal(both?.id, 'eu-ssd', 'weights add up');
  });

  test('agents without free slots are never picked', () => {
    const s = selector({ preferred: [{ term: term('fast', 'exists'), weight: 10 }] });
    assert.equal(pickAgent(s, 'docker', [agent('fast', { fast: '1' }, 0), agent('slow', {}, 1)])?.id, 'slow');
    assert.equal(pickAgent(s, 'docker', [agent('full', {}, 0), agent('negative', {}, -1)]), undefined);
  });

  test('the agent must have the executor', () => {
    const agents = [agent('docker', {}, 5, ['docker', 'ssh']), agent('http', {}, 1, ['http'])];
    assert.equal(pickAgent(EMPTY_SELECTOR, 'http', agents)?.id, 'http');
    assert.equal(pickAgent(EMPTY_SELECTOR, 'docker', agents)?.id, 'docker');
    assert.equal(pickAgent(EMPTY_SELECTOR, 'ssh', [agent('http', {}, 1, ['http'])]), undefined);
  });

  test('equal scores: most free slots wins, then the first one listed', () => {
    assert.equal(pickAgent(EMPTY_SELECTOR, 'docker', [agent('a', {}, 1), agent('b', {}, 3), agent('c', {}, 2)])?.id, 'b');
    assert.equal(pickAgent(EMPTY_SELECTOR, 'docker', [agent('a', {}, 2), agent('b', {}, 2), agent('c', {}, 2)])?.id, 'a');
  });

  test('takes any iterable and returns the same object', () => {
    const pool = new Map([['x', agent('x', {}, 2)]]);
    assert.equal(pickAgent(EMPTY_SELECTOR, 'docker', pool.values()), pool.get('x'));
    assert.equal(pickAgent(EMPTY_SELECTOR, 'docker', []), undefined);
  });
});

describe('termError', () => {
  test('accepts well-formed terms', () => {
    assert.equal(termError(term('zone', 'eq', 'eu')), undefined);
    assert.equal(termError(term('zone', 'ne', 'eu')), undefined);
    assert.equal(termError(term('zone', 'in', 'eu', 'us')), undefined);
    assert.equal(termError(term('zone', 'exists')), undefined);
    assert.equal(termError(term('zone', 'exists', 'ignored')), undefined);
    assert.equal(termError(term('cpus', 'gt', '2.5')), undefined);
    assert.equal(termError(term('cpus', 'lt', '-3')), undefined);
  });

  test('names what is wrong', () => {
    assert.equal(termError(term('', 'eq', 'eu')), 'key: required');
    assert.equal(termError(term('', 'exists')), 'key: required');
    assert.equal(termError(term('zone', 'in')), 'values: at least one value required for op in');
    assert.equal(termError(term('zone', 'eq')), 'values: exactly one value required for op eq');
    assert.equal(termError(term('zone', 'ne', 'a', 'b')), 'values: exactly one value required for op ne');
    assert.equal(termError(term('cpus', 'gt')), 'values: exactly one value required for op gt');
    assert.equal(termError(term('cpus', 'gt', 'many')), 'values: op gt needs a number');
    assert.equal(termError(term('cpus', 'lt', 'Infinity')), 'values: op lt needs a number');
  });
});
