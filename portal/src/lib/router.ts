// Hash routing: #/items/web1?tab=disks. Links are plain <a href="#/…">, so they open in new tabs,
// can be bookmarked and shared, and the vault serves one page for all of them.
import { useEffect, useState } from "preact/hooks";

export interface Location {
  path: string;
  query: URLSearchParams;
}

function read(): Location {
  const h = location.hash.replace(/^#/, "") || "/";
  const q = h.indexOf("?");
  return {
    path: q < 0 ? h : h.slice(0, q),
    query: new URLSearchParams(q < 0 ? "" : h.slice(q + 1)),
  };
}

export function useLocation(): Location {
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const on = () => setLoc(read());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return loc;
}

export function href(path: string, query?: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ""}`;
}

export function navigate(path: string, query?: Record<string, string | number | undefined>): void {
  location.hash = href(path, query);
}

/** Replaces the query of the current page without a new history entry (filters, tabs). */
export function replaceQuery(query: Record<string, string | number | undefined>): void {
  const next = href(read().path, query);
  history.replaceState(null, "", next);
  dispatchEvent(new HashChangeEvent("hashchange"));
}

/** Matches "/items/:item" against a path; the decoded params, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split("/");
  const s = path.split("/");
  if (p.length !== s.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    const a = p[i] as string;
    const b = s[i] as string;
    if (a.startsWith(":")) {
      try {
        out[a.slice(1)] = decodeURIComponent(b);
      } catch {
        return null; // a malformed escape (#/items/%E0) is no page, not a crash
      }
    } else if (a !== b) return null;
  }
  return out;
}
