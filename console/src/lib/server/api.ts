// Server-side clients of the public Cronium API (cronium.api.v1), over loopback
// Connect with the signed-in operator's token.
import { Code, ConnectError, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { error as httpError, isHttpError, redirect, type RequestEvent } from '@sveltejs/kit';
import { AgentService } from '@cronium/proto/api/v1/agent';
import { AuditService } from '@cronium/proto/api/v1/audit';
import { TokenService } from '@cronium/proto/api/v1/token';
import { AuthService, UserService } from '@cronium/proto/api/v1/user';
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
  readonly auth: Client<typeof AuthService>;
  readonly users: Client<typeof UserService>;
  readonly tokens: Client<typeof TokenService>;
  readonly audit: Client<typeof AuditService>;
  readonly terminals: Client<typeof TerminalService>;
}

/** Who is behind a console request, passed on so the audit log shows the browser, not the console. */
export interface CallerOrigin {
  readonly userAgent?: string | null;
  /** The browser's address; the API believes it only from the console inside the control plane. */
  readonly address?: string;
}

/** Set by the control plane that loaded this console (control-plane/src/api/console-client.ts); absent under `vite dev`. */
const consoleClientSecret = () => (globalThis as Record<symbol, unknown>)[Symbol.for('cronium.consoleClientSecret')] as string | undefined;

/** The browser's user agent and address (adapter-node's, which follows CRONIUM_CONSOLE_ADDRESS_HEADER behind a proxy). */
export function callerOrigin(event: Pick<RequestEvent, 'request' | 'getClientAddress'>): CallerOrigin {
  let address: string | undefined;
  try {
    address = event.getClientAddress();
  } catch {
    // A configured address header the request lacks: the API keeps the socket's address.
  }
  return { userAgent: event.request.headers.get('user-agent'), address };
}

/**
 * Clients that call as `token` (none when empty, for SignIn). With
 * `onUnauthenticated`, a refused token (revoked since sign-in) ends the
 * session and sends the operator to sign in, and a missing or forbidden
 * object becomes a 404 or 403 page.
 */
export function apiFor(token: string, onUnauthenticated?: () => void, origin: CallerOrigin = {}): Api {
  const bearer: Interceptor = (next) => (req) => {
    if (token) req.header.set('authorization', `Bearer ${token}`);
    if (origin.userAgent) req.header.set('user-agent', origin.userAgent.slice(0, 500));
    const secret = consoleClientSecret();
    if (origin.address && secret) req.header.set('x-cronium-console-client', `${secret} ${origin.address}`);
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
    auth: client(createClient(AuthService, transport)),
    users: client(createClient(UserService, transport)),
    tokens: client(createClient(TokenService, transport)),
    audit: client(createClient(AuditService, transport)),
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
