import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

/** Postgres SQLSTATE classes and driver messages that mean "the database is not reachable right now". */
const UNAVAILABLE_CODES = /^(08|57P0[1-3]|53300)/;
const UNAVAILABLE_MESSAGES = /ECONNREFUSED|ECONNRESET|Connection terminated|connection timeout|timeout exceeded when trying to connect|terminating connection|the database system is (starting up|shutting down)|Client has encountered a connection error/i;

function code(error: unknown): string {
  return String((error as { code?: unknown }).code ?? '');
}

/** What a caller should be told about an error the store raised, if it is one the caller can act on. */
export function storeError(error: unknown): ConnectError | undefined {
  if (error instanceof ConnectError) return undefined;
  const text = error instanceof Error ? `${error.message} ${String((error as { cause?: unknown }).cause ?? '')}` : String(error);
  if (UNAVAILABLE_CODES.test(code(error)) || UNAVAILABLE_MESSAGES.test(text) || (error instanceof AggregateError && error.errors.some((e) => storeError(e)?.code === Code.Unavailable))) {
    return new ConnectError('the database is unavailable; try again shortly', Code.Unavailable);
  }
  // Class 22 (data exception), e.g. a NUL byte, which Postgres text and jsonb cannot hold.
  if (/^22/.test(code(error))) return new ConnectError(`a value the database cannot store: ${(error as Error).message}`, Code.InvalidArgument);
  return undefined;
}

/**
 * Outermost interceptor: a database outage answers `unavailable` (retry), not
 * `internal`; streams that fail on the store end the same way.
 */
export function storeErrorInterceptor(): Interceptor {
  return (next) => async (req) => {
    try {
      const res = await next(req);
      if (!res.stream) return res;
      const source = res.message;
      return {
        ...res,
        message: (async function* () {
          try {
            yield* source;
          } catch (error) {
            throw storeError(error) ?? error;
          }
        })(),
      } as typeof res;
    } catch (error) {
      throw storeError(error) ?? error;
    }
  };
}
