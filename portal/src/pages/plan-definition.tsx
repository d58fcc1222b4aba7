// A plan's definition as the vault holds it, to read: each group in the order it runs, the actions
// before and after its machines with the operations they run for, and its machines with their state
// and health (links to their pages).
import type { ItemView, Plan } from "../api/client.ts";
import { isPlanOperation, PLAN_OPERATION_WORDS } from "../lib/plan-edit.ts";
import { href } from "../lib/router.ts";
import { phaseWords } from "../lib/words.ts";
import { HealthBadge } from "../ui/health.tsx";
import { Badge, Empty } from "../ui/kit.tsx";
import { ActionText } from "./plan-run.tsx";

type Action = Plan["groups"][number]["pre"][number];

function onWords(on: readonly string[]): string {
  return on.map((o) => (isPlanOperation(o) ? PLAN_OPERATION_WORDS[o] : o)).join(", ");
}

function Actions(p: { title: string; list: Action[] }) {
  if (p.list.length === 0) return null;
  return (
    <div class="plan-actions">
      <h4>{p.title}</h4>
      <ol class="plan-def-actions">
        {p.list.map((a) => (
          <li key={a.step}>
            <ActionText a={a} />
            <div class="muted plan-def-on">
              for {onWords(a.on)}
              {a.timeoutSeconds !== undefined ? ` · time limit ${a.timeoutSeconds} s` : ""}
            </div>
          </li>
        ))}
      </ol>
    </div>
  );
}

export function DefinitionView(p: { plan: Plan; items: ReadonlyMap<string, ItemView>; onEdit: () => void }) {
  const plan = p.plan;
  if (plan.groups.length === 0) {
    return (
      <Empty
        title="This plan has no groups yet"
        action={
          <button type="button" class="primary" onClick={p.onEdit}>
            Add the first group
          </button>
        }
      >
        <p>
          Put the machines that must come up first (databases, directory servers) in group 1, the ones that
          need them in the next groups, and add the checks and manual steps between them.
        </p>
      </Empty>
    );
  }
  return (
    <>
      <p class="muted">
        Groups run one after the other; the machines of a group at the same time. When a machine fails, the
        run {plan.continueOnError ? "goes on" : "stops"} unless its group says otherwise.
      </p>
      <ol class="plan-group-list">
        {plan.groups.map((g) => (
          <li key={g.n} class="panel plan-group-def" aria-labelledby={`plan-def-${g.n}`}>
            <div class="panel-head">
              <h3 id={`plan-def-${g.n}`}>Group {g.n}</h3>
              <span class="muted">{g.n === 1 ? "runs first" : `runs after group ${g.n - 1}`}</span>
              {g.continueOnError !== plan.continueOnError && (
                <Badge tone="info">
                  {g.continueOnError ? "goes on when a machine fails" : "stops when a machine fails"}
                </Badge>
              )}
            </div>
            <Actions title="Before its machines" list={g.pre} />
            <div class="plan-actions">
              <h4>
                Its machines <span class="muted">({g.items.length}, all at once)</span>
              </h4>
              <table class="plan-machines" aria-label={`Machines of group ${g.n}`}>
                <thead>
                  <tr>
                    <th scope="col">Machine</th>
                    <th scope="col">Health</th>
                    <th scope="col">State</th>
                    <th scope="col">Direction</th>
                  </tr>
                </thead>
                <tbody>
                  {g.items.map((it) => {
                    const v = p.items.get(it.id);
                    return (
                      <tr key={it.id}>
                        <td>
                          <a href={href(`/items/${encodeURIComponent(it.name)}`)}>{it.name}</a>
                        </td>
                        <td>
                          <HealthBadge item={v} />
                        </td>
                        <td>{phaseWords(it.phase)}</td>
                        <td class="nowrap">{it.direction}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
            <Actions title="After its machines" list={g.post} />
          </li>
        ))}
      </ol>
    </>
  );
}
