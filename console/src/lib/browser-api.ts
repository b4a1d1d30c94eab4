// Public API clients for page scripts, through the console's same-origin proxy.
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { EventService } from '@cronium/proto/api/v1/event';
import { JobService } from '@cronium/proto/api/v1/job';
import { WorkflowService } from '@cronium/proto/api/v1/workflow';

const transport = createConnectTransport({ baseUrl: '/console-api' });

export const jobs = createClient(JobService, transport);
export const events = createClient(EventService, transport);
export const workflows = createClient(WorkflowService, transport);
