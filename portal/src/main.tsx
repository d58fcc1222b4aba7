// The portal's entry: signed out, the sign-in page; signed in, the layout and the page the hash names.
import "./styles.css";
import { render } from "preact";
import { useEffect, useErrorBoundary, useState } from "preact/hooks";
import { currentToken, onSignedOut } from "./api/client.ts";
import { Layout } from "./layout.tsx";
import { match, useLocation } from "./lib/router.ts";
import { AccessPage } from "./pages/access.tsx";
import { AlertsPage } from "./pages/alerts.tsx";
import { ItemPage } from "./pages/item.tsx";
import { ItemsPage } from "./pages/items.tsx";
import { JobPage, JobsPage } from "./pages/jobs.tsx";
import { PlanPage, PlansPage } from "./pages/plans.tsx";
import { SetupPage } from "./pages/setup.tsx";
import { SignIn } from "./pages/signin.tsx";
import { Empty } from "./ui/kit.tsx";

const ROUTES: readonly [string, (m: Record<string, string>, q: URLSearchParams) => preact.JSX.Element][] = [
  ["/", (_m, q) => <ItemsPage query={q} />],
  ["/items", (_m, q) => <ItemsPage query={q} />],
  ["/items/:item", (m, q) => <ItemPage item={m.item as string} query={q} />],
  ["/jobs", (_m, q) => <JobsPage query={q} />],
  ["/jobs/:job", (m) => <JobPage job={m.job as string} />],
  ["/plans", () => <PlansPage />],
  ["/plans/:plan", (m, q) => <PlanPage plan={m.plan as string} query={q} />],
  ["/alerts", (_m, q) => <AlertsPage query={q} />],
  ["/setup", () => <SetupPage />],
  ["/access", () => <AccessPage />],
];

function Page(p: { path: string; query: URLSearchParams }) {
  for (const [pattern, page] of ROUTES) {
    const m = match(pattern, p.path);
    if (m !== null) return page(m, p.query);
  }
  return (
    <Empty title="There is no such page" action={<a href="#/items">Go to the replicated items</a>}>
      <p>
        <code>{p.path}</code> is not a page of the portal.
      </p>
    </Empty>
  );
}

/** A page that throws shows what happened and a way on, instead of a blank portal. */
function Boundary(p: { path: string; children: preact.ComponentChildren }) {
  const [error, reset] = useErrorBoundary();
  useEffect(() => {
    if (error !== undefined) reset();
  }, [p.path]);
  if (error !== undefined) {
    return (
      <Empty title="This page failed" action={<a href="#/items">Go to the replicated items</a>}>
        <p>
          The portal hit an error it did not expect: <code>{String((error as Error)?.message ?? error)}</code>
          . Reload the page; if it happens again, the browser's console has the details for a bug report.
        </p>
      </Empty>
    );
  }
  return <>{p.children}</>;
}

function App() {
  const [signedIn, setSignedIn] = useState(currentToken() !== null);
  const [reason, setReason] = useState("");
  const loc = useLocation();
  useEffect(
    () =>
      onSignedOut((why) => {
        setReason(why === "" ? "" : `Signed out: ${why}`);
        setSignedIn(false);
      }),
    [],
  );
  useEffect(() => {
    const title = loc.path.split("/")[1] ?? "";
    document.title = `${title === "" ? "Replicated items" : title[0]?.toUpperCase() + title.slice(1)} · Switchback`;
    document.getElementById("main")?.focus({ preventScroll: true });
  }, [loc.path]);
  if (!signedIn) return <SignIn reason={reason} onSignedIn={() => setSignedIn(true)} />;
  return (
    <Layout path={loc.path}>
      <Boundary path={loc.path}>
        {/* keyed by path: item A's state (a draft, its data) never shows on item B */}
        <Page key={loc.path} path={loc.path} query={loc.query} />
      </Boundary>
    </Layout>
  );
}

const root = document.getElementById("app");
if (root !== null) render(<App />, root);
