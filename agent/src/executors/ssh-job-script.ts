// What one SSH job sends and gets back on its single exec channel.
//
// The command is WRAPPER_COMMAND, fixed text. On stdin the agent sends, in one
// write and without waiting for an answer:
//   1. a line `TAG NAME MAX`: a random hex tag that marks where the results
//      start on stdout, a random folder name, and the largest result file to
//      send back;
//   2. the payload: one `{ … }` group of shell text that writes the job's
//      files with the `printf` builtin (contents single-quoted), exports the
//      job's environment, then execs the interpreter. Being one group, a
//      payload cut short is a syntax error and runs nothing.
// The wrapper makes the folder (`mkdir`, which fails if the name exists),
// prints its path, runs the payload in a new session (the job's own process
// group), waits, kills what is left of the group, prints the results after
// `\x1ecronium-results:TAG`, ending with the job's exit code, then becomes
// `rm -rf` of the folder (whose exit status the channel reports).
//
// User strings (script, env, input, variables, names) only ever travel on
// stdin, as single-quoted words; no command line carries one, and the
// environment is never written to a file. The tag is in neither the job's
// environment nor its files.

import { Transform, type TransformCallback } from 'node:stream';
import { INTERPRETERS, isValidVariableKey, jobFileSet, scriptFileName } from './job-files.ts';
import type { ScriptKind } from './job-files.ts';
import type { JobSpec } from '../job.ts';
import { exportLines, shellQuote } from './shell-env.ts';


/** The folders the wrapper makes (relative to the job folder): job-files.ts's and the runtime helpers'. */
const JOB_FOLDERS = ['', 'job', 'job/variables', 'job/variables-set', 'lib', 'lib/bash', 'lib/python', 'lib/python/cronium', 'lib/node', 'lib/node/cronium'];

/** The largest condition file sent back. */
export const MAX_CONDITION_BYTES = 1024;

/**
 * The one command a job starts with; fixed text (no dynamic part at all).
 * setsid (or perl) is looked up before the job's environment can change PATH.
 */
export const WRAPPER_COMMAND = [
  // `which NAME`, without a subshell: sets $w to the first absolute PATH match.
  'find_cmd() { IFS=:; for p in $PATH; do case $p in /*) [ -f "$p/$1" ] && [ -x "$p/$1" ] && { unset IFS; w=$p/$1; return 0; } ;; esac; done; unset IFS; return 1; }',
  'if find_cmd setsid; then set -- "$w"',
  "elif find_cmd perl; then set -- \"$w\" -e 'setpgrp(0, 0); exec @ARGV or die qq(cronium: exec: $!\\n)'",
  "else echo 'cronium: the server has neither setsid nor perl' >&2; exit 127; fi",
  "IFS=' ' read -r tag name max || exit 125",
  "case $tag in '' | *[!0-9a-f]*) exit 125 ;; esac",
  "case $name in '' | *[!0-9A-Za-z]*) exit 125 ;; esac",
  "case $max in '' | *[!0-9]*) exit 125 ;; esac",
  'd=${TMPDIR:-/tmp}/cronium-job.$name',
  'case $d in /*) ;; *) exit 125 ;; esac',
  "case $d in *[!A-Za-z0-9._/-]* | *//* | */./* | */../*) echo \"cronium: unsafe folder $d\" >&2; exit 125 ;; esac",
  '[ ${#d} -le 512 ] || exit 125',
  // Fails if the name exists: the folder is new and ours.
  `mkdir -m 700 ${JOB_FOLDERS.map((f) => (f === '' ? '"$d"' : `"$d/${f}"`)).join(' ')} || exit 125`,
  'printf \'cronium-job-dir:%s\\n\' "$d"',
  'exec 3<&0',
  // The payload runs in this subshell; $1 is the folder, the rest the setsid prefix.
  "( exec 0<&3 3<&-; set -- \"$d\" \"$@\"; cd \"$d\" && . /dev/stdin; echo 'cronium: the job files arrived incomplete' >&2; exit 125 ) &",
  'p=$!',
  'exec 3<&-',
  'echo "$p" > "$d/pgid"',
  'wait "$p"',
  'code=$?',
  'kill -s KILL -- "-$p" 2>/dev/null',
  // One result file: `file NAME SIZE` and its bytes, or `skip NAME WHY`.
  'send() {',
  '  f=$d/job/$1',
  '  if [ -h "$f" ]; then echo "skip $1 symlink"',
  '  elif [ ! -e "$f" ]; then :',
  '  elif [ ! -f "$f" ]; then echo "skip $1 notfile"',
  '  else n=$(wc -c < "$f"); n=$((n))',
  '    if [ "$n" -gt "$2" ]; then echo "skip $1 large $2"; else echo "file $1 $n"; cat -- "$f"; fi',
  '  fi',
  '}',
  "printf '\\036cronium-results:%s\\n' \"$tag\"",
  'v=$d/job/variables-set',
  'if [ -h "$v" ] || { [ -e "$v" ] && [ ! -d "$v" ]; }; then echo "skip variables-set notdir"',
  'elif [ -d "$v" ]; then',
  '  for f in "$v"/* "$v"/.[!.]* "$v"/..?*; do',
  '    k=${f##*/}',
  '    [ -e "$f" ] || [ -h "$f" ] || continue',
  "    case $k in *[!A-Za-z0-9_.-]*) continue ;; esac",
  '    send "variables-set/$k" "$max"',
  '  done',
  'fi',
  'send output "$max"',
  `send condition ${MAX_CONDITION_BYTES}`,
  // The job's code goes in the end line: the channel's exit status is rm's (0: the folder is gone).
  'echo "end $code"',
  'exec rm -rf -- "$d"',
].join('\n');

/** A file the wrapper writes before the job starts; `path` relative to the folder. */
export interface PayloadFile {
  readonly path: string;
  readonly content: Buffer | string;
}

/** Shell text that writes `content` byte for byte to stdout with the printf builtin (NUL via `\000`); latin1 maps each byte to one character and back. */
function printfText(content: Buffer): Buffer {
  const words = content.toString('latin1').split('\0').map((part) => (part ? `printf %s ${shellQuote(part)}\n` : ''));
  return Buffer.from(words.join("printf '\\000'\n"), 'latin1');
}

/** Parent folders of the files, shallowest first. */
function foldersOf(paths: readonly string[]): string[] {
  const folders = new Set<string>();
  for (const path of paths) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join('/'));
  }
  return [...folders].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

export interface JobPayload {
  /** What goes on the wrapper's stdin after the tag line. */
  readonly text: Buffer;
  readonly skippedEnv: readonly string[];
  readonly skippedKeys: readonly string[];
}

/** Shell text that makes any folder beyond JOB_FOLDERS and writes the files (paths relative to the job folder). */
export function filesText(files: readonly PayloadFile[], extraFolders: readonly string[] = []): Buffer {
  const folders = foldersOf([...files.map((f) => f.path), ...extraFolders.map((d) => `${d}/x`)]).filter((f) => !JOB_FOLDERS.includes(f));
  const parts: Buffer[] = folders.length > 0 ? [Buffer.from(`mkdir -m 700 ${folders.map(shellQuote).join(' ')} || exit 125\n`)] : [];
  for (const f of files) {
    parts.push(Buffer.from('{\n'), printfText(Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content, 'utf8')));
    parts.push(Buffer.from(`} > ${shellQuote(f.path)} || exit 125\n`));
  }
  return Buffer.concat(parts);
}

/** The runtime helpers' part of every payload (under lib/); the same for every job. */
export function runtimeText(runtime: readonly PayloadFile[]): Buffer {
  return filesText(runtime.map((f) => ({ path: `lib/${f.path}`, content: f.content })));
}

/**
 * The payload for a job: folder DIR/job (job-files.ts layout), the runtime
 * helpers (`runtimeText`), the job's environment, then ours (which wins; search
 * paths keep the server's after ours), then exec of the interpreter in DIR/job.
 */
export function jobPayload(spec: JobSpec, kind: ScriptKind, runtime: Buffer): JobPayload {
  const set = jobFileSet(spec, kind);
  const files = set.files.map((f) => ({ path: `job/${f.path}`, content: f.content }));
  const { lines: exports, skipped } = exportLines(spec.env);
  const interpreter = INTERPRETERS[kind];
  const tail = [
    ...exports,
    'export CRONIUM_JOB_DIR="$1/job"',
    'export PYTHONPATH="$1/lib/python${PYTHONPATH:+:$PYTHONPATH}"',
    'export NODE_PATH="$1/lib/node${NODE_PATH:+:$NODE_PATH}"',
    'export BASH_ENV="$1/lib/bash/cronium.sh"',
    'shift',
    'cd "$CRONIUM_JOB_DIR" || exit 125',
    `command -v ${interpreter} >/dev/null 2>&1 || { echo 'cronium: ${interpreter}: not found' >&2; exit 127; }`,
    `exec "$@" ${interpreter} "$CRONIUM_JOB_DIR/${scriptFileName(kind)}" </dev/null`,
    '}',
    '',
  ];
  const jobText = filesText(files, [...set.dirs, ...set.writableDirs].map((d) => `job/${d}`));
  return { text: Buffer.concat([Buffer.from('{\n'), jobText, runtime, Buffer.from(tail.join('\n'))]), skippedEnv: skipped, skippedKeys: set.skippedKeys };
}

/** What the wrapper sent back after the job. */
export interface WrapperResults {
  readonly output?: string;
  readonly condition?: string;
  readonly variablesSet: Record<string, string>;
  readonly warnings: string[];
  /** The job's exit code, from the end line; undefined when that never came. */
  readonly code?: number;
}

const SKIP_REASONS: Record<string, (name: string, arg: string) => string> = {
  symlink: (name) => `${name} is a symlink; ignored`,
  notfile: (name) => `${name} is not a regular file; ignored`,
  notdir: (name) => `${name} is not a folder; ignored`,
  large: (name, max) => `${name} is larger than ${max} bytes; ignored`,
};

/** Parses the bytes the wrapper printed after the results marker; `rest` is what followed its end line. */
export function parseWrapperResults(data: Buffer): WrapperResults & { rest: Buffer } {
  const out: { output?: string; condition?: string; variablesSet: Record<string, string>; warnings: string[]; code?: number; rest: Buffer } = {
    variablesSet: {},
    warnings: [],
    rest: Buffer.alloc(0),
  };
  let at = 0;
  while (at < data.length) {
    const nl = data.indexOf(10, at);
    if (nl < 0) break;
    const [verb = '', name = '', arg = '', limit = ''] = data.subarray(at, nl).toString('utf8').split(' ');
    at = nl + 1;
    if (verb === 'end') {
      const code = Number(name);
      if (name !== '' && Number.isSafeInteger(code)) out.code = code;
      out.rest = data.subarray(at);
      return out;
    }
    if (verb === 'skip') {
      out.warnings.push((SKIP_REASONS[arg] ?? SKIP_REASONS.notfile!)(name, limit));
      continue;
    }
    const size = Number(arg);
    if (verb !== 'file' || !Number.isSafeInteger(size) || size < 0 || at + size > data.length) break;
    const value = data.subarray(at, at + size).toString('utf8');
    at += size;
    if (name === 'output') out.output = value;
    else if (name === 'condition') out.condition = value;
    else if (name.startsWith('variables-set/') && isValidVariableKey(name.slice('variables-set/'.length))) out.variablesSet[name.slice('variables-set/'.length)] = value;
  }
  out.warnings.push('the job results from the server were cut short; some may be missing');
  return out;
}

/** The line that starts the results on stdout. */
export function resultsMarker(tag: string): Buffer {
  return Buffer.from(`\x1ecronium-results:${tag}\n`);
}

/**
 * Passes the job's stdout through until the results marker and keeps what
 * follows it. A chunk that ends in what could be the start of the marker
 * holds those few bytes back until the next chunk tells.
 */
export class ResultsTap extends Transform {
  readonly #marker: Buffer;
  #held: Buffer = Buffer.alloc(0);
  #results: Buffer[] | undefined;

  constructor(marker: Buffer) {
    super({ highWaterMark: 64 * 1024 });
    this.#marker = marker;
  }

  /** What followed the marker; undefined when the marker never came. */
  get results(): Buffer | undefined {
    return this.#results && Buffer.concat(this.#results);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.#results) {
      this.#results.push(chunk);
      return callback();
    }
    const data = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    const at = data.indexOf(this.#marker);
    if (at >= 0) {
      this.#held = Buffer.alloc(0);
      this.#results = [data.subarray(at + this.#marker.length)];
      return callback(null, at > 0 ? data.subarray(0, at) : undefined);
    }
    const keep = this.#partialMarkerAtEnd(data);
    this.#held = Buffer.from(data.subarray(data.length - keep));
    callback(null, keep < data.length ? data.subarray(0, data.length - keep) : undefined);
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.#held.length > 0 ? this.#held : undefined);
  }

  /** Length of the longest end of `data` that is a proper start of the marker. */
  #partialMarkerAtEnd(data: Buffer): number {
    const first = this.#marker[0]!;
    const from = Math.max(0, data.length - this.#marker.length + 1);
    for (let i = data.indexOf(first, from); i >= 0; i = data.indexOf(first, i + 1)) {
      if (this.#marker.subarray(0, data.length - i).equals(data.subarray(i))) return data.length - i;
    }
    return 0;
  }
}
