/**
 * What the HTTP API is handed by `sluice serve` (or a test): the store, the catalogue, metrics,
 * auth and a logger. A file of its own because app.ts and every file under routes/ need it, and
 * app.ts imports the routes: declared in app.ts, it made each route file and app.ts import each other.
 */
import type { ActionLookup } from "../spec/catalogue.js";
import type { StateStore } from "../store/types.js";
import type { AuthConfig } from "./auth.js";

/** pino-compatible: the fields object first, the message second. */
export interface ServerLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface ServerDeps {
  store: StateStore;
  /** Sluice home: attempt logs are read from <home>/runs/<runId>/logs/. */
  home: string;
  /** Validates the actions of applied workflows. */
  actions: ActionLookup;
  /** Prometheus text exposition, served at /metrics. */
  metrics: { contentType: string; render(): Promise<string> };
  auth: AuthConfig;
  /** /readyz answers 200 while this is true. */
  ready: () => boolean;
  log?: ServerLog;
  /** How often the UI's live streams look at the store (default 1000 ms; tests go faster). */
  uiPollMs?: number;
  /** Told of every event received through the API (the events metric). */
  onEventReceived?: (name: string) => void;
}
