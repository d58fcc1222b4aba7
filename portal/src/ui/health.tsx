// An item's health as the one word an operator scans for (lib/words.ts health()), as a badge whose
// title says why; a dash when the item's view is not at hand.
import type { ItemView } from "../api/client.ts";
import { health } from "../lib/words.ts";
import { Badge } from "./kit.tsx";

export function HealthBadge(p: { item: ItemView | undefined }) {
  if (p.item === undefined) return <span class="muted">—</span>;
  const h = health(p.item);
  return (
    <Badge tone={h.tone} title={h.why}>
      {h.word}
    </Badge>
  );
}
