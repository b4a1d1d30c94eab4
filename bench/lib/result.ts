// The shape of bench/results/<name>.json, and writing it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from '../../test/harness.ts';
import type { Machine } from './machine.ts';
import { round, roundSummary, type Summary } from './stats.ts';

export const RESULTS_DIR = join(root, 'bench', 'results');

/** One measured figure: a distribution (summary) or a single value (a rate, a size). */
export interface Figure {
  readonly id: string;
  readonly label: string;
  readonly unit: string;
  readonly summary?: Summary;
  readonly value?: number;
  /** A figure of the machine or of a bare tool, not of Cronium. */
  readonly baseline?: boolean;
}

/** Ours against a baseline measured in the same run. */
export interface Comparison {
  readonly label: string;
  readonly ours: string;
  readonly baseline: string;
  /** Which statistic is compared ('value' for single values). */
  readonly stat: 'p50' | 'p99' | 'max' | 'value';
  /** ours / baseline. */
  readonly ratio: number;
  /** ours - baseline, in the figures' unit. */
  readonly delta: number;
}

/** A row of the target table. */
export interface TargetCheck {
  readonly figure: string;
  readonly target: string;
  readonly measured: string;
  /** null when it could not be measured. */
  readonly met: boolean | null;
}

export interface BenchResult {
  readonly name: string;
  readonly title: string;
  readonly startedAt: string;
  readonly durationMs: number;
  readonly machine: Machine;
  /** What was measured and how (markdown, one bullet each). */
  readonly how: readonly string[];
  readonly figures: readonly Figure[];
  readonly comparisons: readonly Comparison[];
  readonly targets: readonly TargetCheck[];
  /** Observations computed from this run (markdown, one bullet each). */
  readonly notes: readonly string[];
  /** Anything else worth keeping (per-phase CPU, settings). */
  readonly details?: Record<string, unknown>;
}

/** Collects a benchmark's figures as it goes. */
export class ResultBuilder {
  readonly how: string[] = [];
  readonly figures: Figure[] = [];
  readonly comparisons: Comparison[] = [];
  readonly targets: TargetCheck[] = [];
  readonly notes: string[] = [];
  readonly details: Record<string, unknown> = {};

  distribution(id: string, label: string, unit: string, summary: Summary, baseline = false): Summary {
    this.figures.push({ id, label, unit, summary: roundSummary(summary), baseline });
    return summary;
  }

  value(id: string, label: string, unit: string, value: number, baseline = false): number {
    this.figures.push({ id, label, unit, value: round(value), baseline });
    return value;
  }

  get(id: string): Figure {
    const figure = this.figures.find((f) => f.id === id);
    if (!figure) throw new Error(`no figure ${id}`);
    return figure;
  }

  stat(id: string, stat: Comparison['stat']): number {
    const figure = this.get(id);
    return stat === 'value' ? (figure.value ?? NaN) : (figure.summary?.[stat] ?? NaN);
  }

  compare(label: string, ours: string, baseline: string, stat: Comparison['stat']): Comparison {
    const a = this.stat(ours, stat);
    const b = this.stat(baseline, stat);
    const comparison = { label, ours, baseline, stat, ratio: round(a / b), delta: round(a - b) };
    this.comparisons.push(comparison);
    return comparison;
  }

  target(figure: string, target: string, measured: string, met: boolean | null): void {
    this.targets.push({ figure, target, measured, met });
  }

  note(text: string): void {
    this.notes.push(text);
  }
}

export function writeResult(result: BenchResult): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const path = join(RESULTS_DIR, `${result.name}.json`);
  writeFileSync(path, JSON.stringify(result, null, 2) + '\n');
  return path;
}
