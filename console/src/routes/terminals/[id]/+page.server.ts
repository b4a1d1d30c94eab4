import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ params, locals }) => {
  // The recording itself (up to 16 MiB) is fetched by the page from ./cast, not inlined here.
  const { recording } = await locals.api.terminals.getRecording({ id: params.id });
  return {
    id: params.id,
    title: `${recording?.targetKind} ${recording?.targetName}`,
    openedBy: recording?.openedBy ?? '',
    startedAt: recording?.startedAt ? timestampDate(recording.startedAt).toISOString() : '',
    endReason: recording?.endReason ?? '',
  };
};
