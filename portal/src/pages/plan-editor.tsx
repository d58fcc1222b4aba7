// The plan editor: the plan's name and what a failure does, then each group in the order it runs —
// the actions before its machines, its machines (added from a picker of the replicated items not in
// the plan yet, moved to another group, removed), the actions after them — with groups moved up and
// down. Changes stay a draft (kept in this tab across page changes) until Save sends the whole
// definition with PUT; mistakes are named at their field before anything is sent, and the vault's own
// refusals (409 while a run of the plan goes on) are shown with their code.
import { useEffect, useMemo, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, ok, type Plan } from "../api/client.ts";
import {
  ACTION_KIND_WORDS,
  ACTION_KINDS,
  type ActionKind,
  actionPath,
  addAction,
  addGroup,
  addItems,
  type DraftAction,
  type DraftGroup,
  draftFromView,
  type GroupOnError,
  type Issue,
  isDirty,
  issuesAt,
  itemIdsInPlan,
  MAX_TIMEOUT_S,
  moveAction,
  moveGroup,
  moveItem,
  PLAN_OPERATION_WORDS,
  PLAN_OPERATIONS,
  type PlanDraft,
  removeAction,
  removeGroup,
  removeItem,
  setContinueOnError,
  setGroupOnError,
  setName,
  toBody,
  toggleActionOn,
  updateAction,
  validate,
  type When,
} from "../lib/plan-edit.ts";
import { phaseWords } from "../lib/words.ts";
import { HealthBadge } from "../ui/health.tsx";
import { Badge, Dialog, ErrorBanner, Field } from "../ui/kit.tsx";

const STORE = "switchback.plan-draft.";

interface Stored {
  updatedAt: string;
  draft: PlanDraft;
}

export interface DraftState {
  draft: PlanDraft;
  base: PlanDraft;
  dirty: boolean;
  /** the plan changed on the vault after this draft began */
  stale: boolean;
  set: (d: PlanDraft) => void;
  discard: () => void;
  /** after a save: the saved plan becomes the base */
  saved: (p: Plan) => void;
}

/**
 * The draft of a plan, kept in sessionStorage while it has changes (so following a link to an item and
 * coming back loses nothing); dropped when the plan changed on the vault before any change was made.
 */
export function usePlanDraft(plan: Plan | undefined): DraftState | null {
  const [s, setS] = useState<{ id: string; updatedAt: string; base: PlanDraft; draft: PlanDraft } | null>(
    null,
  );
  useEffect(() => {
    if (plan === undefined) return;
    setS((cur) => {
      if (cur !== null && cur.id === plan.id) {
        if (cur.updatedAt === plan.updatedAt) return cur;
        // changed on the vault: follow it unless this tab has changes of its own
        if (isDirty(cur.draft, cur.base)) return cur;
        const base = draftFromView(plan);
        return { id: plan.id, updatedAt: plan.updatedAt, base, draft: base };
      }
      const base = draftFromView(plan);
      let draft = base;
      try {
        const raw = sessionStorage.getItem(STORE + plan.id);
        const stored = raw === null ? null : (JSON.parse(raw) as Stored);
        if (stored !== null && stored.updatedAt === plan.updatedAt) draft = stored.draft;
      } catch {
        // a draft that cannot be read is dropped
      }
      return { id: plan.id, updatedAt: plan.updatedAt, base, draft };
    });
  }, [plan?.id, plan?.updatedAt]);
  const dirty = s !== null && isDirty(s.draft, s.base);
  useEffect(() => {
    if (s === null) return;
    if (dirty) {
      sessionStorage.setItem(
        STORE + s.id,
        JSON.stringify({ updatedAt: s.updatedAt, draft: s.draft } satisfies Stored),
      );
    } else sessionStorage.removeItem(STORE + s.id);
  }, [s, dirty]);
  useEffect(() => {
    if (!dirty) return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    addEventListener("beforeunload", warn);
    return () => removeEventListener("beforeunload", warn);
  }, [dirty]);
  if (s === null || plan === undefined) return null;
  return {
    draft: s.draft,
    base: s.base,
    dirty,
    stale: s.updatedAt !== plan.updatedAt,
    set: (draft) => setS({ ...s, draft }),
    discard: () => {
      const base = draftFromView(plan);
      setS({ id: plan.id, updatedAt: plan.updatedAt, base, draft: base });
    },
    saved: (p) => {
      const base = draftFromView(p);
      sessionStorage.removeItem(STORE + p.id);
      setS({ id: p.id, updatedAt: p.updatedAt, base, draft: base });
    },
  };
}

function FieldErrors(p: { issues: Issue[] }) {
  if (p.issues.length === 0) return null;
  return (
    <div class="field-error" role="alert">
      {p.issues.map((i) => (
        <div key={i.path + i.message}>{i.message}</div>
      ))}
    </div>
  );
}

function ItemPicker(p: {
  group: number;
  items: ItemView[] | undefined;
  inPlan: ReadonlySet<string>;
  onAdd: (items: ItemView[]) => void;
  onClose: () => void;
}) {
  const [search, setSearch] = useState("");
  const [picked, setPicked] = useState<Set<string>>(new Set());
  const free = (p.items ?? []).filter((it) => !p.inPlan.has(it.id));
  const shown = free.filter((it) => it.name.toLowerCase().includes(search.trim().toLowerCase()));
  const toggle = (id: string) => {
    const n = new Set(picked);
    if (n.has(id)) n.delete(id);
    else n.add(id);
    setPicked(n);
  };
  return (
    <Dialog
      title={`Add machines to group ${p.group + 1}`}
      onClose={p.onClose}
      wide
      footer={
        <>
          <button type="button" onClick={p.onClose}>
            Cancel
          </button>
          <button
            type="button"
            class="primary"
            disabled={picked.size === 0}
            onClick={() => p.onAdd(free.filter((it) => picked.has(it.id)))}
          >
            Add {picked.size} machine{picked.size === 1 ? "" : "s"}
          </button>
        </>
      }
    >
      {p.items === undefined ? (
        <p class="muted">Loading the replicated items…</p>
      ) : free.length === 0 ? (
        <p class="muted">
          Every replicated item is in this plan already. Protect more machines on the{" "}
          <a href="#/setup">set-up page</a>.
        </p>
      ) : (
        <>
          <p class="muted">
            The machines of one group run their operation at the same time; a machine belongs to one group.
            Items already in this plan are not listed.
          </p>
          <input
            type="search"
            placeholder="Search by name"
            aria-label="Search the replicated items"
            value={search}
            onInput={(e) => setSearch(e.currentTarget.value)}
          />
          <ul class="plan-picker" aria-label="Replicated items not in the plan">
            {shown.map((it) => {
              return (
                <li key={it.id}>
                  <label class="check">
                    <input type="checkbox" checked={picked.has(it.id)} onChange={() => toggle(it.id)} />
                    <span>
                      <strong>{it.name}</strong> <HealthBadge item={it} />{" "}
                      <span class="muted">
                        {phaseWords(it.phase)} · {it.direction}
                      </span>
                    </span>
                  </label>
                </li>
              );
            })}
            {shown.length === 0 && <li class="muted">No item not in the plan matches “{search}”.</li>}
          </ul>
        </>
      )}
    </Dialog>
  );
}

const WHERE_IT_RUNS: Record<ActionKind, string> = {
  script:
    "Runs on the vault with sh -c. It gets SWITCHBACK_PLAN, SWITCHBACK_OPERATION, SWITCHBACK_GROUP and SWITCHBACK_ITEMS; a non-zero exit stops the plan.",
  "machine-script":
    "Runs with sh -c in each machine of the group, in the copy that is up at that moment: the drill copy after a test failover's machines, otherwise the machine where it runs.",
  manual: "The run stops here and shows these instructions; it goes on when someone confirms they are done.",
};

function ActionEditor(p: {
  a: DraftAction;
  n: number;
  count: number;
  path: string;
  issues: Issue[];
  onChange: (patch: Partial<Omit<DraftAction, "key">>) => void;
  onToggle: (op: (typeof PLAN_OPERATIONS)[number]) => void;
  onMove: (delta: number) => void;
  onRemove: () => void;
  label: string;
}) {
  const a = p.a;
  const at = (f: string) => issuesAt(p.issues, `${p.path}.${f}`);
  const msg = (f: string) => at(f)[0]?.message ?? null;
  return (
    <li class="plan-action">
      <div class="plan-action-head">
        <span class="plan-action-n">{p.n}</span>
        <label class="sr-only" for={`${a.key}-kind`}>
          {p.label}: kind
        </label>
        <select
          id={`${a.key}-kind`}
          value={a.kind}
          onChange={(e) => p.onChange({ kind: e.currentTarget.value as ActionKind })}
        >
          {ACTION_KINDS.map((k) => (
            <option key={k} value={k}>
              {ACTION_KIND_WORDS[k]}
            </option>
          ))}
        </select>
        <span class="plan-tools">
          <button
            type="button"
            disabled={p.n === 1}
            aria-label={`${p.label}: move earlier`}
            onClick={() => p.onMove(-1)}
          >
            ↑
          </button>
          <button
            type="button"
            disabled={p.n === p.count}
            aria-label={`${p.label}: move later`}
            onClick={() => p.onMove(1)}
          >
            ↓
          </button>
          <button type="button" aria-label={`${p.label}: remove`} onClick={p.onRemove}>
            Remove
          </button>
        </span>
      </div>
      <p class="hint">{WHERE_IT_RUNS[a.kind]}</p>
      {a.kind === "manual" ? (
        <Field label="What the operator must do before confirming" error={msg("message")}>
          {(id, describedBy, invalid) => (
            <textarea
              id={id}
              maxLength={4000}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              value={a.message}
              placeholder="e.g. Point the DNS name erp.example.com at the recovered web servers"
              onInput={(e) => p.onChange({ message: e.currentTarget.value })}
            />
          )}
        </Field>
      ) : (
        <div class="plan-action-script">
          <Field label="Command" error={msg("run")}>
            {(id, describedBy, invalid) => (
              <textarea
                id={id}
                class="mono"
                maxLength={4000}
                spellcheck={false}
                aria-describedby={describedBy}
                aria-invalid={invalid}
                value={a.run}
                placeholder={a.kind === "script" ? "e.g. /srv/dr/check-db.sh" : "e.g. systemctl start erp"}
                onInput={(e) => p.onChange({ run: e.currentTarget.value })}
              />
            )}
          </Field>
          <Field
            label="Time limit (seconds)"
            error={msg("timeout")}
            hint={`1 to ${MAX_TIMEOUT_S}; empty: 300`}
          >
            {(id, describedBy, invalid) => (
              <input
                id={id}
                inputMode="numeric"
                size={8}
                aria-describedby={describedBy}
                aria-invalid={invalid}
                value={a.timeout}
                onInput={(e) => p.onChange({ timeout: e.currentTarget.value })}
              />
            )}
          </Field>
        </div>
      )}
      <fieldset class="plan-on" aria-invalid={at("on").length > 0}>
        <legend>Runs for</legend>
        {PLAN_OPERATIONS.map((op) => (
          <label key={op} class="plan-on-choice">
            <input type="checkbox" checked={a.on.includes(op)} onChange={() => p.onToggle(op)} />
            {PLAN_OPERATION_WORDS[op]}
          </label>
        ))}
        <FieldErrors issues={at("on")} />
      </fieldset>
    </li>
  );
}

function ActionList(p: {
  d: PlanDraft;
  g: number;
  when: When;
  issues: Issue[];
  set: (d: PlanDraft) => void;
}) {
  const group = p.d.groups[p.g] as DraftGroup;
  const list = group[p.when];
  const title = p.when === "pre" ? "Before its machines" : "After its machines";
  return (
    <div class="plan-actions">
      <h4>{title}</h4>
      {list.length === 0 ? (
        <p class="muted plan-none">Nothing.</p>
      ) : (
        <ol class="plan-action-list">
          {list.map((a, i) => (
            <ActionEditor
              key={a.key}
              a={a}
              n={i + 1}
              count={list.length}
              path={actionPath(p.g, p.when, i)}
              issues={p.issues}
              label={`Group ${p.g + 1}, ${p.when === "pre" ? "before" : "after"}, action ${i + 1}`}
              onChange={(patch) => p.set(updateAction(p.d, p.g, p.when, i, patch))}
              onToggle={(op) => p.set(toggleActionOn(p.d, p.g, p.when, i, op))}
              onMove={(delta) => p.set(moveAction(p.d, p.g, p.when, i, delta))}
              onRemove={() => p.set(removeAction(p.d, p.g, p.when, i))}
            />
          ))}
        </ol>
      )}
      <div class="plan-add-action">
        <span class="muted">Add {p.when === "pre" ? "before" : "after"}:</span>
        {ACTION_KINDS.map((k) => (
          <button
            type="button"
            key={k}
            class="chip"
            aria-label={`Group ${p.g + 1}: add a ${ACTION_KIND_WORDS[k].toLowerCase()} ${p.when === "pre" ? "before" : "after"} its machines`}
            onClick={() => p.set(addAction(p.d, p.g, p.when, k))}
          >
            + {ACTION_KIND_WORDS[k]}
          </button>
        ))}
      </div>
    </div>
  );
}

function GroupEditor(p: {
  d: PlanDraft;
  g: number;
  items: ReadonlyMap<string, ItemView>;
  issues: Issue[];
  set: (d: PlanDraft) => void;
  onPick: () => void;
}) {
  const { d, g } = p;
  const group = d.groups[g] as DraftGroup;
  const n = g + 1;
  const itemIssues = issuesAt(p.issues, `groups.${g}.items`);
  return (
    <li class="panel plan-group-edit" aria-labelledby={`${group.key}-h`}>
      <div class="panel-head">
        <h3 id={`${group.key}-h`}>Group {n}</h3>
        <span class="muted">{g === 0 ? "runs first" : `runs after group ${g}`}</span>
        <span class="plan-tools more">
          <button type="button" disabled={g === 0} onClick={() => p.set(moveGroup(d, g, -1))}>
            ↑ <span class="sr-only">Group {n}: </span>Run earlier
          </button>
          <button
            type="button"
            disabled={g === d.groups.length - 1}
            onClick={() => p.set(moveGroup(d, g, 1))}
          >
            ↓ <span class="sr-only">Group {n}: </span>Run later
          </button>
          <button type="button" onClick={() => p.set(removeGroup(d, g))}>
            Remove<span class="sr-only"> group {n}</span>
          </button>
        </span>
      </div>
      <ActionList d={d} g={g} when="pre" issues={p.issues} set={p.set} />
      <div class="plan-actions">
        <h4>Its machines, all at once</h4>
        {group.items.length === 0 ? (
          <p class="muted plan-none">No machines yet.</p>
        ) : (
          <table class="plan-machines" aria-label={`Machines of group ${n}`}>
            <thead>
              <tr>
                <th scope="col">Machine</th>
                <th scope="col">Health</th>
                <th scope="col">State</th>
                <th scope="col">Move to</th>
                <th scope="col">
                  <span class="sr-only">Remove</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {group.items.map((it) => {
                const v = p.items.get(it.id);
                return (
                  <tr key={it.id}>
                    <td>
                      <a
                        href={`#/items/${encodeURIComponent(it.name)}`}
                        title="Your changes here are kept while you look"
                      >
                        {it.name}
                      </a>
                    </td>
                    <td>
                      <HealthBadge item={v} />
                    </td>
                    <td>{v !== undefined ? phaseWords(v.phase) : <span class="muted">not found</span>}</td>
                    <td>
                      <select
                        aria-label={`Move ${it.name} to another group`}
                        value={String(g)}
                        onChange={(e) => {
                          const to = e.currentTarget.value;
                          p.set(moveItem(d, it.id, to === "new" ? "new" : Number(to)));
                        }}
                      >
                        {d.groups.map((_, k) => (
                          <option key={k} value={String(k)}>
                            Group {k + 1}
                            {k === g ? " (here)" : ""}
                          </option>
                        ))}
                        <option value="new">A new last group</option>
                      </select>
                    </td>
                    <td>
                      <button
                        type="button"
                        class="link-button"
                        aria-label={`Remove ${it.name} from the plan`}
                        onClick={() => p.set(removeItem(d, it.id))}
                      >
                        Remove
                      </button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
        <FieldErrors issues={itemIssues} />
        <button type="button" aria-label={`Add machines to group ${n}`} onClick={p.onPick}>
          Add machines…
        </button>
      </div>
      <ActionList d={d} g={g} when="post" issues={p.issues} set={p.set} />
      <label class="plan-onerror">
        When a machine of this group fails{" "}
        <select
          value={group.onError}
          onChange={(e) => p.set(setGroupOnError(d, g, e.currentTarget.value as GroupOnError))}
        >
          <option value="plan">as the plan says ({d.continueOnError ? "go on" : "stop"})</option>
          <option value="stop">stop the plan</option>
          <option value="go-on">go on with the rest</option>
        </select>
      </label>
    </li>
  );
}

export function PlanEditor(p: {
  plan: Plan;
  state: DraftState;
  items: ItemView[] | undefined;
  runActive: boolean;
  onSaved: (plan: Plan) => void;
}) {
  const { draft: d, set } = p.state;
  const [picking, setPicking] = useState<number | null>(null);
  const [attempted, setAttempted] = useState(false);
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [savedAt, setSavedAt] = useState<number | null>(null);
  const byId = useMemo(() => new Map((p.items ?? []).map((it) => [it.id, it])), [p.items]);
  const known = p.items === undefined ? undefined : new Set(byId.keys());
  const issues = validate(d, known);
  const shown = attempted ? issues : [];
  const save = async () => {
    setAttempted(true);
    setError(null);
    if (issues.length > 0) {
      setTimeout(() => document.getElementById("plan-issues")?.focus(), 0);
      return;
    }
    setSaving(true);
    try {
      const saved = await ok(
        client.PUT("/v1/plans/{plan}", { params: { path: { plan: p.plan.id } }, body: toBody(d) }),
      );
      p.state.saved(saved);
      setAttempted(false);
      setSavedAt(Date.now());
      p.onSaved(saved);
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setSaving(false);
    }
  };
  return (
    <div class="plan-editor">
      {p.runActive && (
        <div class="banner banner-info" role="status">
          A run of this plan is going on: the vault refuses changes until it ends (the run keeps the
          definition it started with). You can prepare changes now and save them afterwards.
        </div>
      )}
      {p.state.stale && (
        <div class="banner banner-warn" role="status">
          Someone changed this plan on the vault after you began editing. Saving replaces their version with
          yours; discard your changes to see theirs.
        </div>
      )}
      <section class="panel" aria-labelledby="plan-settings-h">
        <div class="panel-head">
          <h3 id="plan-settings-h">The plan</h3>
        </div>
        <Field label="Name" error={issuesAt(shown, "name")[0]?.message ?? null}>
          {(id, describedBy, invalid) => (
            <input
              id={id}
              value={d.name}
              aria-describedby={describedBy}
              aria-invalid={invalid}
              onInput={(e) => set(setName(d, e.currentTarget.value))}
            />
          )}
        </Field>
        <label class="check">
          <input
            type="checkbox"
            checked={d.continueOnError}
            onChange={(e) => set(setContinueOnError(d, e.currentTarget.checked))}
          />
          <span>
            Go on when a machine fails
            <small class="hint">
              {" "}
              (off: the run stops at the group where a machine failed or was refused, so later groups do not
              start without what they depend on; each group can say otherwise)
            </small>
          </span>
        </label>
      </section>
      {d.groups.length === 0 ? (
        <div class="empty plan-empty-groups">
          <h2>No groups yet</h2>
          <p class="empty-body">
            A group is a set of machines that go together, e.g. the databases. Groups run one after the other
            in the order you give them, with scripts or manual steps before and after each.
          </p>
        </div>
      ) : (
        <ol class="plan-group-list">
          {d.groups.map((g, gi) => (
            <GroupEditor
              key={g.key}
              d={d}
              g={gi}
              items={byId}
              issues={shown}
              set={set}
              onPick={() => setPicking(gi)}
            />
          ))}
        </ol>
      )}
      <button type="button" onClick={() => set(addGroup(d))}>
        + Add a group
      </button>
      <ErrorBanner error={error} prefix="The vault did not save the plan:" />
      {attempted && issues.length > 0 && (
        <div class="banner banner-bad plan-issues" id="plan-issues" tabIndex={-1} role="alert">
          <strong>Not saved yet. Fix these first:</strong>
          <ul>
            {issues.map((i) => (
              <li key={i.path + i.message}>{i.message}</li>
            ))}
          </ul>
        </div>
      )}
      <section class="plan-savebar" aria-label="Save the plan">
        {p.state.dirty ? (
          <Badge tone="warn">Unsaved changes</Badge>
        ) : (
          <span class="muted">{savedAt !== null ? "Saved." : "No changes."}</span>
        )}
        {attempted && issues.length > 0 && (
          <span class="field-error">
            {issues.length} thing{issues.length === 1 ? "" : "s"} to fix before saving
          </span>
        )}
        <span class="plan-savebar-buttons">
          <button
            type="button"
            disabled={!p.state.dirty || saving}
            onClick={() => {
              p.state.discard();
              setAttempted(false);
              setError(null);
            }}
          >
            Discard changes
          </button>
          <button type="button" class="primary" disabled={!p.state.dirty || saving} onClick={save}>
            {saving ? "Saving…" : "Save the plan"}
          </button>
        </span>
      </section>
      {picking !== null && (
        <ItemPicker
          group={picking}
          items={p.items}
          inPlan={itemIdsInPlan(d)}
          onClose={() => setPicking(null)}
          onAdd={(its) => {
            set(
              addItems(
                d,
                picking,
                its.map((it) => ({ id: it.id, name: it.name })),
              ),
            );
            setPicking(null);
          }}
        />
      )}
    </div>
  );
}
