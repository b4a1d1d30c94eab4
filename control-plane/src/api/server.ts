import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { ConnectRouter } from '@connectrpc/connect';
import { EventService } from '@cronium/proto/api/v1/event';
import { RunService } from '@cronium/proto/api/v1/run';
import { JobService } from '@cronium/proto/api/v1/job';
import { authInterceptor, originKey } from './auth.ts';
import { changeInterceptor } from './changes.ts';
import { createContextValues } from '@connectrpc/connect';
import { AuthService, UserService } from '@cronium/proto/api/v1/user';
import { TokenService } from '@cronium/proto/api/v1/token';
import { AuditService } from '@cronium/proto/api/v1/audit';
import { userService } from './user-service.ts';
import { authService } from './auth-service.ts';
import { tokenService } from './token-service.ts';
import { auditService } from './audit-service.ts';
import { storeErrorInterceptor } from './store-errors.ts';
import { eventService } from './event-service.ts';
import { runService } from './run-service.ts';
import { jobService } from './job-service.ts';
import { agentService } from './agent-service.ts';
import { AgentService } from '@cronium/proto/api/v1/agent';
import { ServerService } from '@cronium/proto/api/v1/server';
import { serverService } from './server-service.ts';
import { VariableService } from '@cronium/proto/api/v1/variable';
import { variableService } from './variable-service.ts';
import { NotificationService } from '@cronium/proto/api/v1/notification';
import { notificationService } from './notification-service.ts';
import type { ApiDeps } from './deps.ts';
import { opsRoutes } from './ops-routes.ts';
import { tracingInterceptor } from '../tracing.ts';
import { WorkflowService } from '@cronium/proto/api/v1/workflow';
import { workflowService } from './workflow-service.ts';
import { webhookHandler } from './webhooks.ts';
import { loadConsole, servesConsole, type NodeHandler } from './console-mount.ts';
import { callerAddress } from './console-client.ts';
import { TerminalService } from '@cronium/proto/api/v1/terminal';
import { terminalService } from './terminal-service.ts';

export interface ApiServerOptions {
  readonly host: string;
  /** HTTP/1.1: Connect (JSON and binary) and gRPC-Web under /api. */
  readonly httpPort: number;
  /** Cleartext HTTP/2 (h2c): gRPC, Connect and gRPC-Web under /api. */
  readonly grpcPort: number;
}

const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface ApiServer {
  readonly httpPort: number;
  readonly grpcPort: number;
  close(): Promise<void>;
}

export async function startApiServer(deps: ApiDeps, options: ApiServerOptions): Promise<ApiServer> {
  const routes = (router: ConnectRouter) => {
    router.service(EventService, eventService(deps));
    router.service(RunService, runService(deps));
    router.service(JobService, jobService(deps));
    router.service(AgentService, agentService(deps));
    router.service(ServerService, serverService(deps));
    router.service(WorkflowService, workflowService(deps));
    router.service(VariableService, variableService(deps));
    router.service(NotificationService, notificationService(deps));
    router.service(UserService, userService(deps));
    router.service(AuthService, authService(deps));
    router.service(TokenService, tokenService(deps));
    router.service(AuditService, auditService(deps));
    router.service(TerminalService, terminalService(deps));
  };
  const ops = opsRoutes(deps);
  const hooks = webhookHandler(deps);
  let consoleHandler: NodeHandler | undefined;
  const adapter = connectNodeAdapter({
    routes,
    requestPathPrefix: '/api',
    interceptors: [tracingInterceptor(), storeErrorInterceptor(), authInterceptor({ db: deps.db, sessionKey: deps.access.sessionKey, apiLimiter: deps.access.apiLimiter }), changeInterceptor(deps.db, deps.sealer)],
    contextValues: (req) =>
      createContextValues().set(originKey, { remoteAddress: callerAddress(req.headers, req.socket?.remoteAddress), userAgent: String(req.headers['user-agent'] ?? '').slice(0, 500) }),
    readMaxBytes: MAX_MESSAGE_BYTES,
    writeMaxBytes: MAX_MESSAGE_BYTES,
    fallback: (req, res) => {
      if (ops(req, res)) return;
      if (hooks(req, res)) return;
      if (consoleHandler && req instanceof http.IncomingMessage && servesConsole(req.url)) return consoleHandler(req, res as http.ServerResponse);
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: the API is under /api/<service>/<method>\n');
    },
  });
  const h1 = http.createServer(adapter);
  const h2 = http2.createServer(adapter);
  h1.on('upgrade', (req, socket, head) => deps.terminals?.upgrade(req, socket, head) || socket.destroy());
  const listen = (server: http.Server | http2.Http2Server, port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, options.host, () => resolve((server.address() as AddressInfo).port));
    });
  const httpPort = await listen(h1, options.httpPort);
  const grpcPort = await listen(h2, options.grpcPort);
  consoleHandler = loadConsole(options.host, httpPort);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  return {
    httpPort,
    grpcPort,
    async close() {
      h1.closeAllConnections();
      for (const session of sessions) session.destroy();
      await Promise.all([new Promise((r) => h1.close(r)), new Promise((r) => h2.close(r))]);
    },
  };
}
