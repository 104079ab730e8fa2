/** The cron scheduler: the pure fire computation (schedule.ts) and the leader's loop (scheduler.ts). */
export * from "./schedule.js";
export * from "./scheduler.js";
