/**
 * A counting semaphore: the process-wide cap on attempts running at once, shared by all runs.
 */
export interface Limiter {
  acquire(): Promise<void>;
  release(): void;
  readonly active: number;
}

export function createLimiter(max: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return {
    get active() {
      return active;
    },
    acquire() {
      if (active < max) {
        active++;
        return Promise.resolve();
      }
      return new Promise<void>((res) => waiting.push(res));
    },
    release() {
      const next = waiting.shift();
      if (next) next();
      else active--;
    },
  };
}
