/**
 * Where an attempt's log goes: `<home>/runs/<run>/logs/<step>.<attempt>.log`. The engine decides
 * it (it opens the file for every attempt, exec or in-process) and the API reads it back; kept
 * apart from exec.ts so that the server finds it without importing an action.
 */
import { join } from "node:path";

export function attemptLogFile(home: string, runId: string, step: string, attempt: number): string {
  return join(home, "runs", runId, "logs", `${step}.${attempt}.log`);
}
