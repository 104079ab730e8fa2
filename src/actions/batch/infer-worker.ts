/**
 * The worker-thread entry of `sluice ingest`'s schema inference (see inferInWorker in
 * infer-source.ts): one source sampled and typed, the result handed back as plain data.
 */
import { inferSource, type InferUnit } from "./infer-source.js";
import { serveUnits } from "./worker-pool.js";

serveUnits((unit: InferUnit) => inferSource(unit.source, unit.options));
