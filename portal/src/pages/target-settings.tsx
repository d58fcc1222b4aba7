// Compute and network: how the machine comes up at the recovery site (name, size, network, subnet,
// address, test network, public port). Checked as you type; saved with PATCH /v1/items/{item}, which
// applies to the next failover or drill. Locked while a failover is under way or not yet committed.
import { useEffect, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, ok } from "../api/client.ts";
import {
  type Errors,
  type TargetSettingsDraft,
  type TargetSettingsField,
  validateTargetSettings,
} from "../lib/validate.ts";
import { ErrorBanner, Field } from "../ui/kit.tsx";

function draftOf(it: ItemView): TargetSettingsDraft {
  const s = it.targetSettings;
  const str = (v: number | string | undefined) => (v === undefined ? "" : String(v));
  return {
    targetName: s.targetName ?? "",
    cpus: str(s.cpus),
    memoryMiB: s.memoryBytes === undefined ? "" : String(Math.round(s.memoryBytes / 1048576)),
    network: s.network ?? "",
    subnet: s.subnet ?? "",
    ip: s.ip ?? "",
    testNetwork: s.testNetwork ?? "",
    publicPort: str(s.publicPort),
    servicePort: str(s.servicePort),
  };
}

/** A setting once made can be changed, not removed (the API merges what it is sent). */
function clearedFields(before: TargetSettingsDraft, d: TargetSettingsDraft): Errors<TargetSettingsField> {
  const e: Errors<TargetSettingsField> = {};
  for (const k of Object.keys(d) as TargetSettingsField[]) {
    if (before[k] !== "" && d[k].trim() === "")
      e[k] = "a setting cannot be removed, only changed: type a value or undo";
  }
  return e;
}

/** The PATCH body: only the fields that changed and are set. */
export function patchOf(
  before: TargetSettingsDraft,
  d: TargetSettingsDraft,
): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  for (const k of Object.keys(d) as TargetSettingsField[]) {
    if (d[k] === before[k] || d[k] === "") continue;
    if (k === "cpus" || k === "publicPort" || k === "servicePort") out[k] = Number(d[k]);
    else if (k === "memoryMiB") out.memoryBytes = Number(d[k]) * 1048576;
    else out[k] = d[k].trim();
  }
  return out;
}

const FIELDS: readonly {
  k: TargetSettingsField;
  label: string;
  hint: string;
  placeholder?: string;
  inputMode?: "numeric";
}[] = [
  {
    k: "targetName",
    label: "Name at the target",
    hint: "the machine's name when it runs at the recovery site",
  },
  { k: "cpus", label: "CPUs", hint: "", inputMode: "numeric" },
  { k: "memoryMiB", label: "Memory (MiB)", hint: "", inputMode: "numeric" },
  { k: "network", label: "Network", hint: "the production network at the target (by name or subnet)" },
  { k: "subnet", label: "Subnet", hint: "", placeholder: "10.1.2.0/24" },
  {
    k: "ip",
    label: "IP address",
    hint: "never set: the target picks a free address",
    placeholder: "10.1.2.15",
  },
  {
    k: "testNetwork",
    label: "Test network",
    hint: "an isolated network for drills, never the production one",
  },
  {
    k: "publicPort",
    label: "Public port",
    hint: "forwarded from the site's edge to the machine",
    inputMode: "numeric",
  },
  {
    k: "servicePort",
    label: "Service port",
    hint: "the machine's port it forwards to (default: the same)",
    inputMode: "numeric",
  },
];

export function TargetSettingsForm(p: { item: ItemView; onSaved: () => void; readOnly?: boolean }) {
  // the draft's own base: what the vault had when editing began. The patch is the difference from
  // it, so a field another operator changed meanwhile is not put back unless it was edited here too.
  const [initial, setInitial] = useState<TargetSettingsDraft>(() => draftOf(p.item));
  const [d, setD] = useState<TargetSettingsDraft>(initial);
  const [changedMeanwhile, setChangedMeanwhile] = useState(false);
  useEffect(() => {
    const now = draftOf(p.item);
    if (JSON.stringify(now) === JSON.stringify(initial)) return;
    if (Object.keys(patchOf(initial, d)).length === 0) {
      setInitial(now);
      setD(now);
    } else setChangedMeanwhile(true);
  }, [p.item.updatedAt]);
  const [touched, setTouched] = useState<Partial<Record<TargetSettingsField, boolean>>>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const errors = { ...clearedFields(initial, d), ...validateTargetSettings(d) };
  const patch = patchOf(initial, d);
  const locked = p.readOnly === true || p.item.phase === "failing-over" || p.item.phase === "failed-over";
  const invalid = Object.keys(errors).length > 0;
  const save = async (e: Event) => {
    e.preventDefault();
    setTouched(Object.fromEntries(FIELDS.map((f) => [f.k, true])));
    if (invalid || Object.keys(patch).length === 0) return;
    setBusy(true);
    setError(null);
    try {
      await ok(client.PATCH("/v1/items/{item}", { params: { path: { item: p.item.id } }, body: patch }));
      setSaved(true);
      setChangedMeanwhile(false);
      p.onSaved();
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={save} aria-label="Compute and network" class="settings-form">
      {locked && p.readOnly !== true && (
        <p class="banner banner-warn">
          The item is {p.item.phase}: target settings apply to the next failover, so they can change after
          commit.
        </p>
      )}
      <ErrorBanner error={error} prefix="Not saved:" />
      {changedMeanwhile && (
        <p class="banner banner-warn" role="status">
          These settings changed on the vault since you began editing. Saving sends only the fields you
          changed here; undo to see the vault's values.
        </p>
      )}
      {saved && Object.keys(patch).length === 0 && (
        <p class="banner banner-info" role="status">
          Saved. They apply to the next drill or failover.
        </p>
      )}
      <fieldset disabled={locked || busy} class="settings-grid">
        {FIELDS.map((f) => (
          <Field
            key={f.k}
            label={f.label}
            hint={f.hint === "" ? undefined : f.hint}
            error={touched[f.k] ? errors[f.k] : undefined}
          >
            {(id, describedBy, inv) => (
              <input
                id={id}
                name={f.k}
                value={d[f.k]}
                placeholder={f.placeholder}
                inputMode={f.inputMode}
                aria-describedby={describedBy}
                aria-invalid={inv}
                onInput={(e) => {
                  setSaved(false);
                  setD({ ...d, [f.k]: e.currentTarget.value });
                }}
                onBlur={() => setTouched({ ...touched, [f.k]: true })}
              />
            )}
          </Field>
        ))}
      </fieldset>
      <div class="form-actions">
        <button
          type="submit"
          class="primary"
          disabled={locked || busy || invalid || Object.keys(patch).length === 0}
        >
          {busy ? "Saving…" : "Save settings"}
        </button>
        <button
          type="button"
          disabled={Object.keys(patch).length === 0 || busy}
          onClick={() => {
            const now = draftOf(p.item);
            setInitial(now);
            setD(now);
            setTouched({});
            setChangedMeanwhile(false);
          }}
        >
          Undo changes
        </button>
        {invalid && <span class="field-error">Fix the fields marked above to save.</span>}
      </div>
    </form>
  );
}
