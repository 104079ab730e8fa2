/**
 * What the spec layer needs to know about actions, without depending on the actions layer:
 * which agent/action and service/action pairs exist, and the schema of their `with:` inputs.
 * The actions layer implements this interface; the CLI and server pass it in.
 */
import type { z } from "zod";

export type ActionKind = "agent" | "service";

export interface ActionSignature {
  kind: ActionKind;
  owner: string;
  action: string;
  input: z.ZodType;
  /** Present when the action can run as a continuous (streaming) stage. */
  stream?: unknown;
}

export interface ActionLookup {
  find(kind: ActionKind, owner: string, action: string): ActionSignature | undefined;
  /** Owners of a kind (for suggestions), or the actions of one owner. */
  names(kind: ActionKind, owner?: string): string[];
}
