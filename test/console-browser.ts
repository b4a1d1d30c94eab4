// Debian's Chromium (headless, a fresh profile) through playwright-core, for
// the console's browser tests: the page, its script errors and CSP refusals,
// and screenshots into .cache/screenshots/.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { root } from './harness.ts';

export const screenshots = join(root, '.cache', 'screenshots');

export interface ConsoleBrowser {
  readonly browser: BrowserContext;
  readonly page: Page;
  /** Uncaught errors and Content-Security-Policy refusals in the pages. */
  readonly pageErrors: string[];
  shot(name: string): Promise<unknown>;
  close(): Promise<void>;
}

export function watchErrors(page: Page, pageErrors: string[]): void {
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) pageErrors.push(message.text());
  });
}

export async function openBrowser(): Promise<ConsoleBrowser> {
  mkdirSync(screenshots, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'cronium-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CRONIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1280, height: 860 },
    colorScheme: 'light',
  });
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(20_000);
  const pageErrors: string[] = [];
  watchErrors(page, pageErrors);
  return {
    browser,
    page,
    pageErrors,
    shot: (name) => page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true }),
    async close() {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
