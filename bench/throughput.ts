import type { Benchmark } from './lib/context.ts';
export const throughput: Benchmark = { name: 'throughput', title: 'throughput', budgetMs: 1000, async run() { throw new Error('not built'); } };
