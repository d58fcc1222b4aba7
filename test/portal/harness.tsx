// The page the dialog tests open: one operation dialog of one item, as the item page would open it.
// The query names them: ?item=NAME&op=failover[&point=ID][&patch=JSON]. The item is read from the
// real vault (the signed-in token is put in sessionStorage before the page loads); `patch` overrides
// fields of it (e.g. a drill record) for states seeding cannot reach. What the dialog did is kept in
// window.harness (closes, started jobs) for the test to read; window.harnessPatch(fields) hands the
// open dialog the item with those fields changed, as the item page does when the item is updated.
// Bundled by esbuild (buildPortal).
import "../../portal/src/styles.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { type ApiError, client, type ItemView, type Operation, ok } from "../../portal/src/api/client.ts";
import { OperationDialog } from "../../portal/src/dialogs/index.tsx";

/** What the dialog did, read by the test as window.harness. */
export interface HarnessRecord {
  closed: number;
  started: { id: string }[];
}

const q = new URLSearchParams(location.search);
const record: HarnessRecord = { closed: 0, started: [] };
(window as unknown as { harness: HarnessRecord }).harness = record;

function Harness() {
  const [item, setItem] = useState<ItemView | null>(null);
  const [error, setError] = useState<string>("");
  const [open, setOpen] = useState(true);
  useEffect(() => {
    (window as unknown as { harnessPatch: (f: Partial<ItemView>) => void }).harnessPatch = (f) =>
      setItem((it) => (it === null ? it : { ...it, ...f }));
    ok(client.GET("/v1/items/{item}", { params: { path: { item: q.get("item") ?? "" } } })).then(
      (it) => {
        const patch = q.get("patch");
        setItem(patch === null ? it : { ...it, ...(JSON.parse(patch) as Partial<ItemView>) });
      },
      (err: ApiError) => setError(`${err.code}: ${err.message}`),
    );
  }, []);
  if (error !== "") return <p id="harness-error">{error}</p>;
  if (item === null) return <p>Loading the item…</p>;
  const point = q.get("point");
  return (
    <main>
      <h1>
        {item.name} <small id="harness-state">{open ? "dialog open" : "dialog closed"}</small>
      </h1>
      {open && (
        <OperationDialog
          item={item}
          op={q.get("op") as Operation}
          {...(point !== null ? { point } : {})}
          onClose={() => {
            record.closed++;
            setOpen(false);
          }}
          onStarted={(job) => {
            record.started.push(job);
            setOpen(false);
          }}
        />
      )}
    </main>
  );
}

const root = document.getElementById("app");
if (root !== null) render(<Harness />, root);
