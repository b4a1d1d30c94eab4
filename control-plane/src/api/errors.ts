import { Code, ConnectError } from '@connectrpc/connect';

export function invalid(field: string, problem: string): ConnectError {
  return new ConnectError(`${field}: ${problem}`, Code.InvalidArgument);
}

export function notFound(what: string, id: string): ConnectError {
  return new ConnectError(`${what} ${JSON.stringify(id)} not found`, Code.NotFound);
}

/** resource_exhausted (HTTP 429) with a Retry-After header in seconds. */
export function tooManyRequests(what: string, retryAfterMs: number): ConnectError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new ConnectError(`too many ${what}: retry in ${seconds} s`, Code.ResourceExhausted, { 'retry-after': String(seconds) });
}
