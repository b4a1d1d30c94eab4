import type { Benchmark } from './lib/context.ts';
export const idle: Benchmark = { name: 'idle', title: 'idle', budgetMs: 1000, async run() { throw new Error('not built'); } };
