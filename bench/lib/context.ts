// What run.ts hands each benchmark.
import type { ResultBuilder } from './result.ts';

export interface BenchContext {
  /** Milliseconds left before this benchmark should wrap up (it stops by itself). */
  timeLeft(): number;
  log(message: string): void;
}

export interface Benchmark {
  readonly name: string;
  readonly title: string;
  /** Wall-clock budget; the benchmark sizes its phases to fit. */
  readonly budgetMs: number;
  run(ctx: BenchContext, result: ResultBuilder): Promise<void>;
}
