// Optional CPU profiles of the control plane (BENCH_CPU_PROF=1): where its time goes.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { root } from '../../test/harness.ts';

export const profiling = process.env.BENCH_CPU_PROF === '1';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  readonly file: string;
  readonly sampledMs: number;
  /** Self time by function, largest first. */
  readonly functions: { name: string; where: string; selfPercent: number }[];
  /** Self time by package or source folder. */
  readonly areas: { area: string; selfPercent: number }[];
}

/** Env for a process to write its CPU profile into a fresh folder on exit. */
export function profileEnv(label: string): { env: Record<string, string>; dir: string } {
  // Kept out of bench/results (and out of git: .cache is ignored); a profile is several MB.
  const dir = join(root, 'bench', '.cache', 'profiles', label);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return { env: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${dir}` }, dir };
}

function areaOf(url: string): string {
  if (!url) return '(native / idle / gc)';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith('node:')) return 'node internals';
  const rel = relative(root, path);
  return rel.startsWith('..') ? path : rel.split('/').slice(0, 3).join('/');
}

export function summarizeProfiles(dir: string, top = 15): ProfileSummary[] {
  const summaries: ProfileSummary[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const self = new Map<number, number>();
    profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    let total = 0;
    for (const v of self.values()) total += v;
    const fn = new Map<string, { name: string; where: string; us: number }>();
    const area = new Map<string, number>();
    for (const [id, us] of self) {
      const node = byId.get(id)!;
      const { functionName, url, lineNumber } = node.callFrame;
      const name = functionName || '(anonymous)';
      if (name === '(idle)' || name === '(program)') {
        area.set(name, (area.get(name) ?? 0) + us);
        fn.set(name, { name, where: '', us: (fn.get(name)?.us ?? 0) + us });
        continue;
      }
      const where = url ? `${relative(root, url.replace(/^file:\/\//, ''))}:${lineNumber + 1}` : '';
      const key = `${name}@${where}`;
      fn.set(key, { name, where, us: (fn.get(key)?.us ?? 0) + us });
      const a = name === '(garbage collector)' ? '(garbage collector)' : areaOf(url);
      area.set(a, (area.get(a) ?? 0) + us);
    }
    const pct = (us: number) => Math.round((us / total) * 1000) / 10;
    summaries.push({
      file: relative(root, join(dir, file)),
      sampledMs: Math.round(total / 1000),
      functions: [...fn.values()].sort((a, b) => b.us - a.us).slice(0, top).map((f) => ({ name: f.name, where: f.where, selfPercent: pct(f.us) })),
      areas: [...area.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([a, us]) => ({ area: a, selfPercent: pct(us) })),
    });
  }
  return summaries;
}
