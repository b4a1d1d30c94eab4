// CPU time and resident memory of processes, read from /proc (Linux).
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux

/** utime + stime of a process in milliseconds, or NaN when it is gone. */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Resident set size in MB (VmRSS), or NaN when the process is gone. */
export function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Postgres backend processes serving one database (their command line names it). */
export function postgresBackends(database: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.startsWith('postgres:') && cmdline.includes(` ${database} `)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** Measures CPU used by a changing set of processes over a window (backends come and go). */
export class CpuMeter {
  readonly #pids: () => number[];
  readonly #start = new Map<number, number>();
  readonly #last = new Map<number, number>();
  #startedAt = 0;

  constructor(pids: () => number[]) {
    this.#pids = pids;
  }

  start(): this {
    this.#startedAt = performance.now();
    for (const pid of this.#pids()) {
      const cpu = cpuMs(pid);
      this.#start.set(pid, cpu);
      this.#last.set(pid, cpu);
    }
    return this;
  }

  /** Call now and then so that processes that end are still counted up to their last sample. */
  sample(): void {
    for (const pid of this.#pids()) {
      const cpu = cpuMs(pid);
      if (!Number.isFinite(cpu)) continue;
      if (!this.#start.has(pid)) this.#start.set(pid, 0);
      this.#last.set(pid, cpu);
    }
  }

  /** CPU used since start, as a percentage of one core, and the CPU milliseconds. */
  stop(): { percentOfCore: number; cpuMs: number; wallMs: number } {
    this.sample();
    let used = 0;
    for (const [pid, last] of this.#last) used += last - (this.#start.get(pid) ?? 0);
    const wallMs = performance.now() - this.#startedAt;
    return { percentOfCore: (used / wallMs) * 100, cpuMs: used, wallMs };
  }
}

/** Processes whose command name (/proc/<pid>/comm) is one of the given. */
export function pidsByName(...names: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (names.includes(readFileSync(`/proc/${entry}/comm`, 'utf8').trim())) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

/** CPU meters over several groups of processes at once. */
export class CpuMeters {
  readonly #meters: [string, CpuMeter][];
  #timer: NodeJS.Timeout | undefined;
  readonly #self = process.cpuUsage();
  readonly #startedAt = performance.now();

  constructor(groups: Record<string, () => number[]>) {
    this.#meters = Object.entries(groups).map(([name, pids]) => [name, new CpuMeter(pids).start()]);
    this.#timer = setInterval(() => this.#meters.forEach(([, m]) => m.sample()), 500);
  }

  /** Percent of one core per group, plus this process ('bench'). */
  stop(): Record<string, number> {
    clearInterval(this.#timer);
    const out: Record<string, number> = {};
    for (const [name, meter] of this.#meters) out[name] = Math.round(meter.stop().percentOfCore * 10) / 10;
    const used = process.cpuUsage(this.#self);
    out.bench = Math.round(((used.user + used.system) / 1000 / (performance.now() - this.#startedAt)) * 1000) / 10;
    return out;
  }
}
