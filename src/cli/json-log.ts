/**
 * JSON log lines with every key once, for `SLUICE_LOG_FORMAT=json sluice run` and the service
 * logger of `sluice serve` / `sluice worker`.
 *
 * Why not plain pino: pino writes its base bindings and the fields of each call side by side
 * without merging them, so `log.info({ owner }, "worker started")` through a logger whose base
 * holds `owner` printed `"owner":"w-1",…,"owner":"w-1"`. JSON.parse silently keeps the last,
 * other readers keep the first or refuse the line. Here the base fields are merged into each
 * call's fields, the call's value winning: it is the more specific statement, and the value
 * every JSON.parse reader has been seeing. A field spelt like one of pino's own keys (`level`,
 * `time`, and `msg` when a message is given too) is kept, renamed `_level`, `_time`, `_msg`:
 * nothing is dropped. The merge is one object spread per line; lines are per event, not per row.
 * (Child loggers would bring pino's unmerged bindings back: none is made from these loggers.)
 */
import { pino, type DestinationStream, type Logger } from "pino";
import { maskSecrets } from "../crypto/masker.js";

const RESERVED = ["level", "time"] as const;

export function jsonLogger(base: Record<string, unknown>, opts: { level?: string; destination: DestinationStream }): Logger {
  return pino(
    {
      base: null,
      level: opts.level ?? "info",
      timestamp: pino.stdTimeFunctions.isoTime,
      hooks: {
        logMethod(args, method) {
          const [first, ...rest] = args as unknown[];
          let fields: Record<string, unknown>;
          let tail: unknown[];
          if (first instanceof Error) {
            fields = { err: first };
            tail = rest.length > 0 ? rest : [first.message];
          } else if (first !== null && typeof first === "object") {
            fields = first as Record<string, unknown>;
            tail = rest;
          } else {
            fields = {};
            tail = args as unknown[];
          }
          const merged: Record<string, unknown> = { ...base, ...fields };
          for (const k of RESERVED) if (k in merged) rename(merged, k);
          if ("msg" in merged && tail.length > 0 && tail[0] !== undefined) rename(merged, "msg");
          return (method as (...a: unknown[]) => void).apply(this, [merged, ...tail]);
        },
      },
    },
    // Every line passes the process-wide secret masker on its way out (crypto/masker.ts).
    { write: (line: string) => opts.destination.write(maskSecrets(line)) },
  );
}

function rename(o: Record<string, unknown>, key: string): void {
  let to = `_${key}`;
  while (to in o) to = `_${to}`;
  o[to] = o[key];
  delete o[key];
}
