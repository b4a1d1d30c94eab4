import type { Benchmark } from './lib/context.ts';
export const dockerJob: Benchmark = { name: 'docker-job', title: 'docker-job', budgetMs: 1000, async run() { throw new Error('not built'); } };
