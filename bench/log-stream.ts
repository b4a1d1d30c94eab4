import type { Benchmark } from './lib/context.ts';
export const logStream: Benchmark = { name: 'log-stream', title: 'log-stream', budgetMs: 1000, async run() { throw new Error('not built'); } };
