// Public API clients for page scripts, through the console's same-origin proxy.
import { createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { JobService } from '@cronium/proto/api/v1/job';

const transport = createConnectTransport({ baseUrl: '/console-api' });

export const jobs = createClient(JobService, transport);
