// A named refusal: what the pure core returns instead of throwing. The shell turns one into a
// SwitchbackError (CLI: one sentence and exit 1; API: a 409 problem document with the code).
import { SwitchbackError } from "./errors.ts";

export interface Refusal {
  readonly refused: true;
  readonly code: string;
  readonly message: string;
}

export function refuse(code: string, message: string): Refusal {
  return { refused: true, code, message };
}

export function isRefusal(x: unknown): x is Refusal {
  return typeof x === "object" && x !== null && (x as Refusal).refused === true;
}

/** Returns the value, or throws the refusal as a SwitchbackError. */
export function orThrow<T>(x: T | Refusal): T {
  if (isRefusal(x)) throw new SwitchbackError(x.code, x.message);
  return x;
}
