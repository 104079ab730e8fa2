export { createRun, type StartRunInput } from "./start.js";
export { executeRun, defaultLimiter, leaseTtl, type EngineOptions } from "./execute.js";
export { createLimiter, type Limiter } from "./limiter.js";
export type { EngineEvent, EventSink } from "./events.js";
export { runDetail, type RunDetail } from "./detail.js";
export { startWorker, type Worker, type WorkerOptions } from "./worker.js";
