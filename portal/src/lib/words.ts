// The vault's states and operations in the words the portal shows, and their tones.
import type { ItemView, Operation } from "../api/client.ts";
import type { Tone } from "../ui/kit.tsx";

export const PHASE_WORDS: Record<string, string> = {
  enabling: "Enabling",
  "initial-replication": "Initial replication",
  protected: "Protected",
  "failing-over": "Failing over",
  "failed-over": "Failed over, not committed",
  "failover-committed": "Failover committed",
  reprotecting: "Reprotecting",
  disabled: "Disabled",
};

export const OPERATION_WORDS: Record<Operation, string> = {
  "test-failover": "Test failover",
  "test-failover-cleanup": "Clean up test failover",
  failover: "Failover",
  "change-point": "Change recovery point",
  commit: "Commit",
  reprotect: "Reprotect",
  disable: "Disable replication",
};

export function phaseWords(phase: string): string {
  return PHASE_WORDS[phase] ?? phase;
}

/**
 * The one word an operator scans the list for, with its tone: the vault's own health summary (what
 * the list's filters and counts use), in words.
 */
export function health(it: ItemView): { tone: Tone; word: string; why: string } {
  const h = it.health;
  if (h.resyncRequired) return { tone: "bad", word: "Resync", why: "a full resynchronisation is required" };
  switch (h.summary) {
    case "initial":
      return {
        tone: "info",
        word: "Initial",
        why: h.initialReplication ? `initial replication ${Math.round(h.initialReplication.percent)} %` : "",
      };
    case "ok":
      return { tone: "ok", word: "Healthy", why: "RPO within its threshold" };
    case "warning":
      return { tone: "warn", word: "Warning", why: "RPO above 80 % of its threshold" };
    case "critical":
      return { tone: "bad", word: "Critical", why: "RPO above its threshold" };
    default:
      return h.rpoStatus === "unknown"
        ? { tone: "muted", word: "No point yet", why: "no recovery point yet" }
        : { tone: "muted", word: "Not replicating", why: `${phaseWords(it.phase)}: RPO does not apply` };
  }
}

export function jobTone(state: string): Tone {
  if (state === "succeeded") return "ok";
  if (state === "failed") return "bad";
  if (state === "cancelled") return "muted";
  if (state === "waiting") return "warn";
  return "info";
}
