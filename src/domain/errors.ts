// The one error type that crosses module boundaries: a stable code for machines, a sentence for people.
/** Every refusal carries a stable code and a sentence naming the thing, the value and what to do. */
export class SwitchbackError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "SwitchbackError";
  }
}
