/**
 * The worker-thread entry of the conversion step: one conversion unit at a time (see
 * convert-unit.ts), over the pool protocol of worker-pool.ts. The main thread never imports it.
 */
import { convertUnit } from "./convert-unit.js";
import { serveUnits } from "./worker-pool.js";

serveUnits(convertUnit);
