// The one-line agent install from README.md ("Installing an agent"), filled in.

export function installCommand(options: { controlPlane: string; token: string; labels: Record<string, string> }): string {
  const labels = Object.entries(options.labels).map(([k, v]) => `${k}=${v}`).join(',');
  return [
    'sh install.sh --binary ./cronium-agent',
    `--control-plane ${options.controlPlane}`,
    `--join-token ${options.token}`,
    ...(labels ? [`--labels ${labels}`] : []),
  ].join(' ');
}

/** `zone=eu, disk=ssd` → { zone: 'eu', disk: 'ssd' }; throws on a malformed pair. */
export function parseLabels(source: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of source.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`Labels: write key=value pairs separated by commas (got “${pair}”)`);
    labels[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
  }
  return labels;
}
