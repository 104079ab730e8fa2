/**
 * The browser tests' setup: Debian's Chromium driven by playwright-core (never a browser
 * download), and a real Sluice server on loopback with tokens configured and a real worker
 * executing what the UI starts.
 *
 * Chromium is looked for at $SLUICE_CHROMIUM, then /usr/bin/chromium and /usr/bin/chromium-browser
 * (Debian's package; `.ci/run` installs it when missing). With none there the suites skip and say why.
 */
import { existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { createApp } from "../../src/server/app.js";
import { hashToken } from "../../src/server/auth.js";
import { startHttpServer, type HttpServer } from "../../src/server/listen.js";
import { startWorker, type Worker } from "../../src/engine/worker.js";
import { testEnv, type TestEnv } from "../helpers.js";

export const CHROMIUM = [process.env.SLUICE_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p): p is string => !!p && existsSync(p));
export const NO_CHROMIUM = CHROMIUM ? undefined : "no Chromium binary (set SLUICE_CHROMIUM, or apt-get install -y chromium): the browser tests are skipped";

export const TOKENS = { admin: "ada-admin-secret-1", viewer: "vic-viewer-secret-2" };
/**
 * Where the screenshots go: docs/screenshots (the README's) with SLUICE_SCREENSHOTS=1, else a
 * scratch folder, so an ordinary test run never rewrites tracked files.
 */
export const SCREENSHOTS = process.env.SLUICE_SCREENSHOTS === "1" ? join(process.cwd(), "docs", "screenshots") : mkdtempSync(join(tmpdir(), "sluice-shots-"));

export interface BrowserRig {
  env: TestEnv;
  server: HttpServer;
  worker: Worker;
  browser: Browser;
  url: string;
  close(): Promise<void>;
}

export async function startRig(): Promise<BrowserRig> {
  const env = testEnv();
  const auth = {
    tokens: [
      { name: "ada", role: "admin" as const, hash: hashToken(TOKENS.admin) },
      { name: "vic", role: "viewer" as const, hash: hashToken(TOKENS.viewer) },
    ],
  };
  const app = createApp({
    store: env.store,
    home: env.home,
    actions: env.actions,
    auth,
    uiPollMs: 200,
    ready: () => true,
    metrics: { contentType: "text/plain; version=0.0.4; charset=utf-8", render: async () => "" },
  });
  const server = await startHttpServer({ app, port: 0, auth });
  const worker = await startWorker({ store: env.store, actions: env.actions, home: env.home, pollMs: 100 });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  mkdirSync(SCREENSHOTS, { recursive: true });
  return {
    env,
    server,
    worker,
    browser,
    url: server.url,
    async close() {
      await browser.close();
      await worker.stop(1000);
      await server.close();
      await env.cleanup();
    },
  };
}
