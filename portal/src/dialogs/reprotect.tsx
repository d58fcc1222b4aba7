// Reprotect: after a committed failover, replicate the machine from where it runs now back to the
// site it came from, onto the disks it left there (original location) or into new ones (alternate),
// through a process server, master target and datastore at that site. The vault's checks run as a
// dry run when the dialog opens and after every change: a refusal shows with its code before anything
// starts, and Start stays off while there is one.
import { useId, useState } from "preact/hooks";
import { client, ok } from "../api/client.ts";
import { bytes } from "../lib/format.ts";
import { useLive } from "../lib/live.ts";
import {
  initialReprotectForm,
  LOCATION_WORDS,
  type Location,
  type ReprotectForm,
  reprotectBody,
  reprotectChoices,
  reprotectDirection,
  reprotectSites,
  validateReprotect,
} from "../lib/operation-rules.ts";
import { ErrorBanner, Field } from "../ui/kit.tsx";
import { DecisionPanel, type OperationDialogProps, OperationFrame, useOperationDialog } from "./common.tsx";

const LOCATIONS: readonly Location[] = ["original", "alternate"];

export function ReprotectDialog(p: OperationDialogProps) {
  const it = p.item;
  // "" is the site's default (the vault's own choice): only what the operator changes is sent; the
  // location is the original one only while the machine's disks are still at the return site
  const [form, setForm] = useState<ReprotectForm>(() => initialReprotectForm(it));
  const appliances = useLive(() => ok(client.GET("/v1/appliances")), 0, []);
  const datastores = useLive(() => ok(client.GET("/v1/datastores")), 0, []);
  const sites = reprotectSites(it);
  const choices = reprotectChoices(it, appliances.data ?? [], datastores.data ?? []);
  const errors = validateReprotect(form, it, appliances.data, datastores.data);
  const d = useOperationDialog(p, { errors, body: reprotectBody(form) });
  const direction = d.preview.decision?.direction ?? reprotectDirection(it);
  const radioName = useId();
  const loading = appliances.data === undefined || datastores.data === undefined;

  const select = <T extends { id: string; name: string }>(
    k: "processServer" | "masterTarget" | "datastore",
    label: string,
    hint: string,
    list: readonly T[],
    describe: (x: T) => string,
  ) => {
    const dflt = list[0]?.id ?? "";
    return (
      <Field label={label} hint={hint} error={errors[k]}>
        {(id, describedBy, invalid) => (
          <select
            id={id}
            value={form[k] || dflt}
            disabled={loading || list.length === 0}
            aria-describedby={describedBy}
            aria-invalid={invalid}
            onChange={(e) => {
              const v = e.currentTarget.value;
              setForm({ ...form, [k]: v === dflt ? "" : v });
            }}
          >
            {loading && <option value="">Loading…</option>}
            {list.map((x, i) => (
              <option key={x.id} value={x.id}>
                {x.name}
                {i === 0 ? " (default)" : ""} · {describe(x)}
              </option>
            ))}
          </select>
        )}
      </Field>
    );
  };
  const applianceWords = (a: { health: { liveness: string } }) => a.health.liveness;
  const datastoreWords = (d: {
    health: { reachable: boolean };
    capacityBytes: number | null;
    usedBytes: number | null;
  }) =>
    !d.health.reachable
      ? "not reachable"
      : d.capacityBytes !== null && d.usedBytes !== null
        ? `${bytes(d.capacityBytes - d.usedBytes)} free`
        : "reachable";

  return (
    <OperationFrame {...d.frame} wide>
      <p class="direction">
        <span class="direction-label">Direction</span> {direction}
      </p>
      <p class="lead">
        Replicates {it.name} from <strong>{sites.running}</strong>, where it runs now, back to{" "}
        <strong>{sites.returning}</strong>. Once its first point lands there it is protected again, and can
        fail back.
      </p>
      <fieldset>
        <legend>Where the copy goes at {sites.returning}</legend>
        {LOCATIONS.map((l) => (
          <label class="radio" key={l}>
            <input
              type="radio"
              name={radioName}
              value={l}
              checked={form.location === l}
              autofocus={form.location === l}
              onChange={() => setForm({ ...form, location: l })}
            />
            <span>
              <strong>{LOCATION_WORDS[l].label}</strong>
              <small>
                {LOCATION_WORDS[l].explain(sites.returning)}
                {l === "original" && it.disksAtReturnSite === false && it.phase !== "reprotecting"
                  ? ` The vault holds no disks of ${it.name} at ${sites.returning} now.`
                  : ""}
              </small>
            </span>
          </label>
        ))}
      </fieldset>
      <fieldset class="appliance-choices">
        <legend>Appliances and datastore at {sites.returning}</legend>
        {select(
          "processServer",
          "Process server",
          "receives the replicated data",
          choices.processServers,
          applianceWords,
        )}
        {select(
          "masterTarget",
          "Master target",
          "writes the machine's disks",
          choices.masterTargets,
          applianceWords,
        )}
        {select(
          "datastore",
          "Datastore",
          form.location === "original"
            ? "holds the new recovery points"
            : "holds the recovery points and the new disks",
          choices.datastores,
          datastoreWords,
        )}
        <ErrorBanner error={appliances.error ?? datastores.error} prefix="Could not load the choices:" />
      </fieldset>
      <DecisionPanel {...d.panel} waitingWhy="Fix the choices marked above to check with the vault." />
    </OperationFrame>
  );
}
