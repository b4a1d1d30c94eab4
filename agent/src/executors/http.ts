// Runs `http` jobs: one request with global fetch; status, headers and body
// become the job's output.

import type { ExecutionResult, Executor, JobKind, JobSpec, JsonValue, RunContext } from '../job.ts';

export interface HttpExecutorOptions {
  /** Response body bytes kept (logged and in the output); the rest is dropped. Default 1 MiB. */
  readonly maxBodyBytes?: number;
}

export interface HttpOutput {
  readonly status: number;
  readonly statusText: string;
  readonly headers: Record<string, string>;
  readonly body: JsonValue;
}

function failure(outcome: ExecutionResult['outcome'], exitCode: number, error: string): ExecutionResult {
  return { outcome, exitCode, error, variablesSet: {}, oomKilled: false };
}

/** Reads at most max bytes of the body, then cancels the rest. */
async function readCapped(res: Response, max: number): Promise<{ bytes: Buffer; truncated: boolean }> {
  if (!res.body) return { bytes: Buffer.alloc(0), truncated: false };
  const chunks: Buffer[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { bytes: Buffer.concat(chunks), truncated: false };
    const room = max - size;
    if (value.length > room) {
      chunks.push(Buffer.from(value.subarray(0, room)));
      await reader.cancel().catch(() => {});
      return { bytes: Buffer.concat(chunks), truncated: true };
    }
    chunks.push(Buffer.from(value));
    size += value.length;
  }
}

function errorMessage(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // undici reports "fetch failed" with the real reason in `cause`.
  const cause = (err as { cause?: unknown }).cause;
  return cause instanceof Error ? `${err.message}: ${cause.message}` : err.message;
}

export class HttpExecutor implements Executor {
  readonly name = 'http';
  readonly kinds: readonly JobKind[] = ['http'];
  readonly #maxBodyBytes: number;

  constructor(options: HttpExecutorOptions = {}) {
    this.#maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  }

  async run(spec: JobSpec, ctx: RunContext): Promise<ExecutionResult> {
    const req = spec.http;
    if (spec.kind !== 'http' || !req) return failure('failed', 1, 'http job without an http request');
    if (ctx.signal.aborted) return failure('cancelled', -1, 'cancelled before start');
    const system = (line: string) => ctx.log('system', Buffer.from(line + '\n'));
    const method = (req.method || 'GET').toUpperCase();
    const timeout = spec.timeoutSeconds > 0 ? AbortSignal.timeout(spec.timeoutSeconds * 1000) : undefined;
    const signal = timeout ? AbortSignal.any([ctx.signal, timeout]) : ctx.signal;
    const t0 = performance.now();
    try {
      ctx.started();
      const res = await fetch(req.url, {
        method,
        headers: req.headers,
        body: method === 'GET' || method === 'HEAD' || req.body === '' ? undefined : req.body,
        signal,
        redirect: 'follow',
      });
      const { bytes, truncated } = await readCapped(res, this.#maxBodyBytes);
      const ms = Math.round(performance.now() - t0);
      await system(`${['HTTP', res.status, res.statusText].filter((x) => x !== '').join(' ')} in ${ms} ms`);
      if (bytes.length > 0) await ctx.log('stdout', bytes);
      if (truncated) await system(`response body truncated after ${bytes.length} bytes`);

      const text = bytes.toString('utf8');
      let body: JsonValue = text;
      if (/[/+]json\b/i.test(res.headers.get('content-type') ?? '') && !truncated && text !== '') {
        try {
          body = JSON.parse(text) as JsonValue;
        } catch {
          body = text;
        }
      }
      const output: HttpOutput = {
        status: res.status,
        statusText: res.statusText,
        headers: Object.fromEntries(res.headers),
        body,
      };
      const ok = res.status >= 200 && res.status < 400;
      return {
        outcome: ok ? 'succeeded' : 'failed',
        exitCode: ok ? 0 : 1,
        error: ok ? '' : `HTTP ${res.status}`,
        output: output as unknown as JsonValue,
        variablesSet: {},
        oomKilled: false,
      };
    } catch (err) {
      if (ctx.signal.aborted) return failure('cancelled', -1, 'cancelled');
      if (timeout?.aborted) {
        const error = `timed out after ${spec.timeoutSeconds}s`;
        await system(error);
        return failure('timed_out', -1, error);
      }
      const error = errorMessage(err);
      await system(error);
      return failure('failed', 1, error);
    }
  }
}
