// The small bash process that runs a job inside its container (cold or warm)
// and says how it ended, so the agent can report the result as soon as the
// script exits instead of after the engine has torn the container down
// (30–40 ms of the engine's exit handling on every job here).
//
// It waits for one line on stdin, `<name> <nonce>`: the job folder's name
// under its root (only names the agent makes: `job` or `job-…`) and a random
// token. It runs the interpreter on the folder's script as its child, with
// the job's environment from ENV_FILE (through `env`, so any name works), in
// the child's own process group (job control on, so SIGINT and SIGQUIT keep
// their defaults, as under tini alone), forwards TERM, INT and HUP to it
// (tini forwards `docker stop`'s SIGTERM to this shell), waits, then writes
// `CRONIUM-EXIT-<nonce> <exit code> <oom kills>` as the last line on both
// stdout and stderr and exits with the job's code. Each pipe keeps its order,
// so once both lines have arrived every byte the script wrote before it
// exited has arrived too. The oom count is the container's memory cgroup's
// `oom_kill` counter (`?` when unreadable).
//
// The job runs as the same user and could print such a line itself; that only
// ends its own job early (its container is removed right after), which it can
// do anyway by exiting.

import { randomBytes } from 'node:crypto';

/** In a job folder: the job's environment (envFile), read by the supervisor. */
export const ENV_FILE = '.cronium-env';

/**
 * The job's environment for ENV_FILE: `NAME=value` records, each ended by NUL,
 * applied in order (a later name wins). Names that are empty or hold `=` or
 * NUL, and values that hold NUL, cannot be passed and are named in `skipped`.
 */
export function envFile(env: Readonly<Record<string, string>>): { content: Buffer; skipped: string[] } {
  const records: string[] = [];
  const skipped: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) skipped.push(name);
    else records.push(`${name}=${value}\0`);
  }
  return { content: Buffer.from(records.join('')), skipped };
}

export const SUPERVISOR = [
  // Its own variables carry a prefix: the job inherits this shell's environment, image variables included.
  'IFS=" " read -r __cronium_name __cronium_nonce || exit 111',
  'case "$__cronium_name" in job|job-*) ;; *) exit 111 ;; esac',
  'case "$__cronium_name" in */*) exit 111 ;; esac',
  '__cronium_dir="$1/$__cronium_name" __cronium_child=',
  'for __cronium_s in TERM INT HUP; do trap "[ -n \\"\\$__cronium_child\\" ] && kill -$__cronium_s \\"\\$__cronium_child\\" 2>/dev/null" $__cronium_s; done',
  'exec 3>&1 4>&2',
  'set -m',
  // The job's environment: NUL-separated NAME=value records, given to `env` so that any name works.
  `( set -- "$2" "$__cronium_dir/$3" "$__cronium_dir/${ENV_FILE}"; __cronium_env=(); if [ -f "$3" ]; then mapfile -d "" -t __cronium_env < "$3"; fi; exec env -- "\${__cronium_env[@]}" "$1" "$2" ) </dev/null 3>&- 4>&- &`,
  '__cronium_child=$!',
  'set +m',
  'exec 2>/dev/null',
  'wait "$__cronium_child"; __cronium_code=$?',
  'while kill -0 "$__cronium_child" 2>/dev/null; do wait "$__cronium_child"; __cronium_code=$?; done',
  '__cronium_oom="?"',
  'for __cronium_f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do',
  '  if [ -r "$__cronium_f" ]; then __cronium_oom=0; while read -r __cronium_k __cronium_v; do [ "$__cronium_k" = oom_kill ] && __cronium_oom=$__cronium_v; done < "$__cronium_f"; break; fi',
  'done',
  'printf "CRONIUM-EXIT-%s %s %s\\n" "$__cronium_nonce" "$__cronium_code" "$__cronium_oom" >&3',
  'printf "CRONIUM-EXIT-%s %s %s\\n" "$__cronium_nonce" "$__cronium_code" "$__cronium_oom" >&4',
  'exit "$__cronium_code"',
].join('\n');

/** The container command: the supervisor for jobs whose folders are under `root`, running `interpreter` on `scriptName`. */
export function supervisorCommand(root: string, interpreter: string, scriptName: string): string[] {
  return ['bash', '-c', SUPERVISOR, 'cronium-supervisor', root, interpreter, scriptName];
}

/** What the supervisor reported: the job's exit code and the container's OOM kills (undefined when it could not tell). */
export interface JobExit {
  readonly exitCode: number;
  readonly oomKills: number | undefined;
}

/** A token for one job and the line that hands the job over. */
export function handOver(name: string): { nonce: string; line: string } {
  const nonce = randomBytes(16).toString('hex');
  return { nonce, line: `${name} ${nonce}\n` };
}

/**
 * Finds the supervisor's exit line in one output stream. Bytes before it are
 * the job's and pass through unchanged; bytes that could be the start of it
 * are held until the next chunk shows what they are; the line and anything
 * after it are dropped.
 */
export class ExitLineScanner {
  readonly #token: Buffer;
  #held: Buffer = Buffer.alloc(0);
  #exit: JobExit | undefined;

  constructor(nonce: string) {
    this.#token = Buffer.from(`CRONIUM-EXIT-${nonce} `);
  }

  get exit(): JobExit | undefined {
    return this.#exit;
  }

  /** The job's bytes in this chunk that can be forwarded now. */
  push(chunk: Buffer): Buffer {
    if (this.#exit) return Buffer.alloc(0);
    const data = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    this.#held = Buffer.alloc(0);
    let from = 0;
    for (;;) {
      const at = data.indexOf(this.#token, from);
      if (at < 0) break;
      const end = data.indexOf(0x0a, at + this.#token.length);
      if (end < 0) {
        this.#held = Buffer.from(data.subarray(at));
        return data.subarray(0, at);
      }
      this.#exit = parseExit(data.subarray(at + this.#token.length, end).toString('latin1'));
      if (this.#exit) return data.subarray(0, at);
      from = end + 1; // not the supervisor's line: the job's output
    }
    const keep = partialTokenLength(data.subarray(from), this.#token);
    this.#held = Buffer.from(data.subarray(data.length - keep));
    return data.subarray(0, data.length - keep);
  }

  /** At the stream's end without an exit line: what was held back is the job's. */
  flush(): Buffer {
    const rest = this.#held;
    this.#held = Buffer.alloc(0);
    return rest;
  }
}

function parseExit(text: string): JobExit | undefined {
  const match = /^(\d{1,3}) (\d+|\?)$/.exec(text);
  if (!match) return undefined;
  return { exitCode: Number(match[1]), oomKills: match[2] === '?' ? undefined : Number(match[2]) };
}

/** The length of the longest end of `data` that is a beginning of `token`. */
function partialTokenLength(data: Buffer, token: Buffer): number {
  for (let n = Math.min(token.length - 1, data.length); n > 0; n--) {
    if (data.subarray(data.length - n).equals(token.subarray(0, n))) return n;
  }
  return 0;
}
