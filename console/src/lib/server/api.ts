// Server-side clients of the public Cronium API (cronium.api.v1), over loopback
// Connect with the signed-in operator's token.
import { Code, ConnectError, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { error as httpError, isHttpError, redirect } from '@sveltejs/kit';
import { AgentService } from '@cronium/proto/api/v1/agent';
import { EventService } from '@cronium/proto/api/v1/event';
import { JobService } from '@cronium/proto/api/v1/job';
import { NotificationService } from '@cronium/proto/api/v1/notification';
import { RunService } from '@cronium/proto/api/v1/run';
import { ServerService } from '@cronium/proto/api/v1/server';
import { VariableService } from '@cronium/proto/api/v1/variable';
import { WorkflowService } from '@cronium/proto/api/v1/workflow';
import { TerminalService } from '@cronium/proto/api/v1/terminal';

export function apiUrl(): string {
  return process.env.CRONIUM_API_URL || `http://127.0.0.1:${process.env.CRONIUM_HTTP_PORT || 8080}/api`;
}

export interface Api {
  readonly events: Client<typeof EventService>;
  readonly runs: Client<typeof RunService>;
  readonly jobs: Client<typeof JobService>;
  readonly agents: Client<typeof AgentService>;
  readonly servers: Client<typeof ServerService>;
  readonly workflows: Client<typeof WorkflowService>;
  readonly variables: Client<typeof VariableService>;
  readonly notifications: Client<typeof NotificationService>;
  readonly terminals: Client<typeof TerminalService>;
}

/**
 * Clients that call as `token`. With `onUnauthenticated`, a refused token
 * (revoked since sign-in) ends the session and sends the operator to sign in,
 * and a missing or forbidden object becomes a 404 or 403 page.
 */
export function apiFor(token: string, onUnauthenticated?: () => void): Api {
  const bearer: Interceptor = (next) => (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({ baseUrl: apiUrl(), httpVersion: '1.1', interceptors: [bearer] });
  // Outside the transport: Connect would wrap SvelteKit's redirect and error objects thrown from an interceptor.
  const client = <T extends object>(value: T): T => (onUnauthenticated ? forPages(value, onUnauthenticated) : value);
  return {
    events: client(createClient(EventService, transport)),
    runs: client(createClient(RunService, transport)),
    jobs: client(createClient(JobService, transport)),
    agents: client(createClient(AgentService, transport)),
    servers: client(createClient(ServerService, transport)),
    workflows: client(createClient(WorkflowService, transport)),
    variables: client(createClient(VariableService, transport)),
    notifications: client(createClient(NotificationService, transport)),
    terminals: client(createClient(TerminalService, transport)),
  };
}

function forPages<T extends object>(client: T, onUnauthenticated: () => void): T {
  const translate = (error: unknown): never => {
    if (error instanceof ConnectError) {
      if (error.code === Code.Unauthenticated) {
        onUnauthenticated();
        redirect(303, '/login');
      }
      if (error.code === Code.NotFound) httpError(404, error.rawMessage);
      if (error.code === Code.PermissionDenied) httpError(403, error.rawMessage);
    }
    throw error;
  };
  return new Proxy(client, {
    get(target, property, receiver) {
      const method = Reflect.get(target, property, receiver) as unknown;
      if (typeof method !== 'function') return method;
      return (...args: unknown[]) => {
        const result = method.apply(target, args) as unknown;
        return result instanceof Promise ? result.catch(translate) : result;
      };
    },
  });
}

/** A form action's failure message for an API error (invalid_argument names the field). */
export function apiMessage(error: unknown): string {
  if (error instanceof ConnectError) return error.rawMessage;
  if (isHttpError(error)) return error.body.message;
  return error instanceof Error ? error.message : String(error);
}
