import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals }) => {
  const { recordings } = await locals.api.terminals.listRecordings({ pageSize: 200 });
  return {
    recordings: recordings.map((r) => ({
      id: r.id,
      openedBy: r.openedBy,
      target: `${r.targetKind} ${r.targetName}`,
      agentId: r.agentId,
      clientAddress: r.clientAddress,
      startedAt: r.startedAt ? timestampDate(r.startedAt).toISOString() : '',
      endedAt: r.endedAt ? timestampDate(r.endedAt).toISOString() : '',
      endReason: r.endReason,
      outputBytes: Number(r.outputBytes),
    })),
  };
};
