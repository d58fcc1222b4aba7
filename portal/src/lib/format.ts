// Numbers and times the way an operator reads them: "4 s", "3 min", "2.1 GiB", "12:04:31".

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${(s / 3600).toFixed(s < 10 * 3600 ? 1 : 0)} h`;
  return `${Math.round(s / 86400)} d`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (iso === null || iso === undefined) return "never";
  return `${duration((now - Date.parse(iso)) / 1000)} ago`;
}

export function time(iso: string | null | undefined): string {
  if (iso === null || iso === undefined) return "—";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString(undefined, { hour12: false })
    : d.toLocaleString(undefined, { hour12: false });
}

export function percent(p: number): string {
  return `${p < 10 ? p.toFixed(1) : Math.round(p)} %`;
}
