// useLive: data that stays current. Loads now, again every `everyMs` while the tab is visible (and at
// once when it becomes visible again), and on reload(). Keeps the last good data while a refresh fails,
// so a vault restart shows as an error banner, not an empty page.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import type { ApiError } from "../api/client.ts";

export interface Live<T> {
  data: T | undefined;
  error: ApiError | null;
  loading: boolean;
  reload: () => void;
}

export function useLive<T>(load: () => Promise<T>, everyMs: number, deps: readonly unknown[]): Live<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const run = useCallback(() => {
    const mine = ++seq.current;
    load().then(
      (d) => {
        if (mine !== seq.current) return;
        setData(d);
        setError(null);
        setLoading(false);
      },
      (e: ApiError) => {
        if (mine !== seq.current) return;
        setError(e);
        setLoading(false);
      },
    );
  }, deps);
  useEffect(() => {
    setLoading(true);
    run();
    if (everyMs <= 0) return;
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") run();
    }, everyMs);
    const onVisible = () => document.visibilityState === "visible" && run();
    document.addEventListener("visibilitychange", onVisible);
    return () => {
      clearInterval(timer);
      document.removeEventListener("visibilitychange", onVisible);
      seq.current++;
    };
  }, [run, everyMs]);
  return { data, error, loading, reload: run };
}
