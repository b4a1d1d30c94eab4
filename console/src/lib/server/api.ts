// Server-side clients of the public Cronium API (cronium.api.v1), over loopback
// Connect with the signed-in operator's token.
import { Code, ConnectError, createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { redirect } from '@sveltejs/kit';
import { AgentService } from '@cronium/proto/api/v1/agent';
import { EventService } from '@cronium/proto/api/v1/event';
import { JobService } from '@cronium/proto/api/v1/job';
import { RunService } from '@cronium/proto/api/v1/run';
import { ServerService } from '@cronium/proto/api/v1/server';

export function apiUrl(): string {
  return process.env.CRONIUM_API_URL || `http://127.0.0.1:${process.env.CRONIUM_HTTP_PORT || 8080}/api`;
}

export interface Api {
  readonly events: Client<typeof EventService>;
  readonly runs: Client<typeof RunService>;
  readonly jobs: Client<typeof JobService>;
  readonly agents: Client<typeof AgentService>;
  readonly servers: Client<typeof ServerService>;
}

/**
 * Clients that call as `token`. With `onUnauthenticated`, a refused token
 * (revoked since sign-in) ends the session and sends the operator to sign in.
 */
export function apiFor(token: string, onUnauthenticated?: () => void): Api {
  const bearer: Interceptor = (next) => async (req) => {
    req.header.set('authorization', `Bearer ${token}`);
    try {
      return await next(req);
    } catch (error) {
      if (onUnauthenticated && error instanceof ConnectError && error.code === Code.Unauthenticated) {
        onUnauthenticated();
        redirect(303, '/login');
      }
      throw error;
    }
  };
  const transport = createConnectTransport({ baseUrl: apiUrl(), httpVersion: '1.1', interceptors: [bearer] });
  return {
    events: createClient(EventService, transport),
    runs: createClient(RunService, transport),
    jobs: createClient(JobService, transport),
    agents: createClient(AgentService, transport),
    servers: createClient(ServerService, transport),
  };
}

/** A form action's failure message for an API error (invalid_argument names the field). */
export function apiMessage(error: unknown): string {
  if (error instanceof ConnectError) return error.rawMessage;
  return error instanceof Error ? error.message : String(error);
}
