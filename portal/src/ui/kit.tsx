// The portal's small component kit: badges, banners, empty states, tabs, fields, dialogs, progress.
// Everything is keyboard-reachable and labelled; colours carry meaning only together with words.
import type { ComponentChildren } from "preact";
import { useEffect, useId, useRef } from "preact/hooks";
import type { ApiError } from "../api/client.ts";

export type Tone = "ok" | "warn" | "bad" | "info" | "muted";

export function Badge(p: { tone: Tone; children: ComponentChildren; title?: string }) {
  return (
    <span class={`badge badge-${p.tone}`} title={p.title}>
      {p.children}
    </span>
  );
}

export function Dot(p: { tone: Tone; label: string }) {
  return <span class={`dot dot-${p.tone}`} role="img" aria-label={p.label} title={p.label} />;
}

export function ErrorBanner(p: { error: ApiError | Error | null; prefix?: string }) {
  if (p.error === null) return null;
  const code = (p.error as ApiError).code;
  return (
    <div class="banner banner-bad" role="alert">
      {p.prefix !== undefined && <strong>{p.prefix} </strong>}
      {code !== undefined && <code class="code">{code}</code>} {p.error.message}
    </div>
  );
}

export function Empty(p: { title: string; children?: ComponentChildren; action?: ComponentChildren }) {
  return (
    <div class="empty">
      <h2>{p.title}</h2>
      {p.children !== undefined && <div class="empty-body">{p.children}</div>}
      {p.action !== undefined && <div class="empty-action">{p.action}</div>}
    </div>
  );
}

export function Loading(p: { what: string }) {
  return (
    <p class="loading" aria-busy="true">
      Loading {p.what}…
    </p>
  );
}

export function Progress(p: { value: number; label: string }) {
  const v = Math.max(0, Math.min(100, p.value));
  return (
    <div
      class="progress"
      role="progressbar"
      aria-label={p.label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(v)}
    >
      <div class="progress-fill" style={{ width: `${v}%` }} />
    </div>
  );
}

export interface TabDef {
  id: string;
  label: string;
}

/** WAI-ARIA tabs: arrow keys move between tabs, the panel is labelled by its tab. */
export function Tabs(p: {
  tabs: readonly TabDef[];
  current: string;
  onChange: (id: string) => void;
  label: string;
  children: ComponentChildren;
}) {
  const base = useId();
  const onKey = (e: KeyboardEvent) => {
    const i = p.tabs.findIndex((t) => t.id === p.current);
    const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (step === 0) return;
    e.preventDefault();
    const next = p.tabs[(i + step + p.tabs.length) % p.tabs.length] as TabDef;
    p.onChange(next.id);
    document.getElementById(`${base}-tab-${next.id}`)?.focus();
  };
  return (
    <div class="tabs">
      <div role="tablist" aria-label={p.label} onKeyDown={onKey}>
        {p.tabs.map((t) => (
          <button
            type="button"
            role="tab"
            key={t.id}
            id={`${base}-tab-${t.id}`}
            aria-selected={t.id === p.current}
            aria-controls={`${base}-panel`}
            tabIndex={t.id === p.current ? 0 : -1}
            onClick={() => p.onChange(t.id)}
          >
            {t.label}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`${base}-panel`} aria-labelledby={`${base}-tab-${p.current}`} class="tabpanel">
        {p.children}
      </div>
    </div>
  );
}

/** A labelled form field; `error` is announced and tied to the control by aria-describedby. */
export function Field(p: {
  label: string;
  hint?: ComponentChildren;
  error?: string | null | undefined;
  children: (id: string, describedBy: string | undefined, invalid: boolean) => ComponentChildren;
}) {
  const id = useId();
  const invalid = p.error !== undefined && p.error !== null && p.error !== "";
  const describedBy =
    [p.hint !== undefined ? `${id}-hint` : "", invalid ? `${id}-error` : ""].filter(Boolean).join(" ") ||
    undefined;
  return (
    <div class={`field${invalid ? " field-invalid" : ""}`}>
      <label for={id}>{p.label}</label>
      {p.children(id, describedBy, invalid)}
      {p.hint !== undefined && (
        <div class="hint" id={`${id}-hint`}>
          {p.hint}
        </div>
      )}
      {invalid && (
        <div class="field-error" id={`${id}-error`} role="alert">
          {p.error}
        </div>
      )}
    </div>
  );
}

/** A modal dialog (the browser's <dialog>: focus stays inside, Escape closes). */
export function Dialog(p: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  footer?: ComponentChildren;
  wide?: boolean;
  /** while something the dialog started is under way */
  closeDisabled?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (d !== null && !d.open) d.showModal();
    return () => d?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      class={`dialog${p.wide ? " dialog-wide" : ""}`}
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        p.onClose();
      }}
    >
      <header class="dialog-head">
        <h2 id={titleId}>{p.title}</h2>
        <button
          type="button"
          class="icon-button"
          aria-label="Close"
          onClick={p.onClose}
          disabled={p.closeDisabled ?? false}
        >
          ×
        </button>
      </header>
      <div class="dialog-body">{p.children}</div>
      {p.footer !== undefined && <footer class="dialog-foot">{p.footer}</footer>}
    </dialog>
  );
}

export function KeyValues(p: { rows: readonly [string, ComponentChildren][] }) {
  return (
    <dl class="kv">
      {p.rows.map(([k, v]) => (
        <div key={k} class="kv-row">
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
