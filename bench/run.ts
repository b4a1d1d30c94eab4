// npm run bench [-- <name> ...]: runs the benchmarks in turn (or the named ones),
// writes bench/results/<name>.json for each and regenerates BENCHMARKS.md from
// every result file. `--report` only regenerates BENCHMARKS.md. `--list` lists them.
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Benchmark } from './lib/context.ts';
import { describeMachine } from './lib/machine.ts';
import { ResultBuilder, writeResult, type BenchResult } from './lib/result.ts';
import { writeReport } from './lib/report.ts';
import { dispatchLatency } from './dispatch-latency.ts';
import { throughput } from './throughput.ts';
import { dockerJob } from './docker-job.ts';
import { logStream } from './log-stream.ts';
import { idle } from './idle.ts';
import { agentsScale } from './agents.ts';
import { schedulerPrecision } from './scheduler.ts';
import { sshJob } from './ssh-job.ts';
import { warmJob } from './warm-job.ts';
import { replicas } from './replicas.ts';

const benchmarks: readonly Benchmark[] = [dispatchLatency, throughput, dockerJob, warmJob, sshJob, logStream, idle, schedulerPrecision, agentsScale, replicas];

/** Past its budget plus this grace, a benchmark is abandoned and the processes it started are killed. */
const GRACE_MS = 60_000;

/** Processes this run started (control planes, agents, lean-agent fleets): the direct children of this process. */
function ownChildren(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

async function killOwnChildren(): Promise<void> {
  const pids = ownChildren();
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  await sleep(3_000);
  for (const pid of ownChildren()) process.kill(pid, 'SIGKILL');
}

function usage(): string {
  return `usage: npm run bench [-- <name> ...] | --report | --list\nbenchmarks: ${benchmarks.map((b) => b.name).join(', ')}`;
}

async function runOne(benchmark: Benchmark): Promise<BenchResult> {
  const startedAt = new Date();
  const started = performance.now();
  const builder = new ResultBuilder();
  const machine = await describeMachine();
  const log = (message: string) => {
    const seconds = ((performance.now() - started) / 1000).toFixed(1).padStart(5);
    process.stderr.write(`[${benchmark.name} ${seconds}s] ${message}\n`);
  };
  log(`start (budget ${benchmark.budgetMs / 1000} s; load average ${machine.loadAverage1m})`);
  let timer: NodeJS.Timeout | undefined;
  const overrun = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${benchmark.name} ran past its budget of ${benchmark.budgetMs / 1000} s`)), benchmark.budgetMs + GRACE_MS);
  });
  try {
    await Promise.race([benchmark.run({ timeLeft: () => benchmark.budgetMs - (performance.now() - started), log }, builder), overrun]);
  } catch (error) {
    // A benchmark that overran or failed may have left processes behind: they are ours, stop them.
    await killOwnChildren();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const result: BenchResult = {
    name: benchmark.name,
    title: benchmark.title,
    startedAt: startedAt.toISOString(),
    durationMs: Math.round(performance.now() - started),
    machine,
    how: builder.how,
    figures: builder.figures,
    comparisons: builder.comparisons,
    targets: builder.targets,
    notes: builder.notes,
    details: builder.details,
  };
  log(`done in ${(result.durationMs / 1000).toFixed(1)} s → ${writeResult(result)}`);
  return result;
}

function printSummary(result: BenchResult): void {
  for (const f of result.figures) {
    const s = f.summary;
    const text = s ? `n=${s.n} p50=${s.p50} p99=${s.p99} max=${s.max}` : `${f.value}`;
    process.stdout.write(`  ${f.baseline ? '(baseline) ' : ''}${f.label}: ${text} ${f.unit}\n`);
  }
  for (const c of result.comparisons) process.stdout.write(`  ${c.label}: ratio ${c.ratio}×, difference ${c.delta}\n`);
  for (const t of result.targets) process.stdout.write(`  target ${t.figure} (${t.target}): ${t.measured} → ${t.met === null ? 'not measured' : t.met ? 'met' : 'NOT met'}\n`);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage() + '\n');
    return 0;
  }
  if (args.includes('--list')) {
    for (const b of benchmarks) process.stdout.write(`${b.name}\t${b.title} (budget ${b.budgetMs / 1000} s)\n`);
    return 0;
  }
  if (args.includes('--report')) {
    process.stdout.write(`wrote ${writeReport()}\n`);
    return 0;
  }
  const unknown = args.filter((name) => !benchmarks.some((b) => b.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown benchmark ${unknown.join(', ')}\n${usage()}\n`);
    return 2;
  }
  const chosen = args.length > 0 ? benchmarks.filter((b) => args.includes(b.name)) : benchmarks;
  const started = performance.now();
  let failures = 0;
  for (const benchmark of chosen) {
    try {
      const result = await runOne(benchmark);
      process.stdout.write(`${benchmark.name}:\n`);
      printSummary(result);
    } catch (error) {
      failures++;
      process.stderr.write(`[${benchmark.name}] failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    }
  }
  process.stdout.write(`wrote ${writeReport()} (${((performance.now() - started) / 1000).toFixed(0)} s in all)\n`);
  // A benchmark that could not run is an error of the harness, not a slow figure.
  return failures > 0 ? 1 : 0;
}

process.exitCode = await main();
// Stray handles (a stuck HTTP keep-alive, a child that ignored SIGTERM) must not keep the run alive.
setTimeout(() => process.exit(process.exitCode ?? 0), 2_000).unref();
