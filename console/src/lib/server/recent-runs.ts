// Runs of the last `hours`, newest first, read page by page from ListRuns
// (which lists newest first) until one is older; capped so a busy system
// cannot make the dashboard read without end.
import type { Api } from './api';
import { runView, type RunView } from '#lib/views.ts';

const PAGE = 200;
const MAX_PAGES = 10;

export async function recentRuns(api: Api, hours: number, now = Date.now()): Promise<{ runs: RunView[]; capped: boolean }> {
  const since = now - hours * 3600_000;
  const runs: RunView[] = [];
  let pageToken = '';
  for (let page = 0; page < MAX_PAGES; page++) {
    const result = await api.runs.listRuns({ pageSize: PAGE, pageToken });
    for (const run of result.runs.map(runView)) {
      if (!run.createdAt || Date.parse(run.createdAt) < since) return { runs, capped: false };
      runs.push(run);
    }
    if (!result.nextPageToken) return { runs, capped: false };
    pageToken = result.nextPageToken;
  }
  return { runs, capped: true };
}
