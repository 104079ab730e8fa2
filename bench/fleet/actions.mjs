// The benchmark's step: does nothing, so what is measured is the engine and the store.
import { z } from "zod";

export const actions = [{ kind: "agent", owner: "bench", action: "noop", description: "nothing", input: z.object({}).strict(), run: async () => ({}) }];
