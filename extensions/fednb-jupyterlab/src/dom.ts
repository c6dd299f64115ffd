/** A tiny DOM builder: the panels are plain elements, text always set as text (never HTML). */

type Child = Node | string | null | undefined | false;
type Attrs = Record<
  string,
  string | number | boolean | EventListener | undefined
>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (key === 'className') {
      el.className = String(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(
      typeof child === 'string' ? document.createTextNode(child) : child
    );
  }
  return el;
}

export function badge(status: string, label: string): HTMLElement {
  return h('span', { className: `fednb-badge fednb-state-${status}` }, label);
}

export function when(seconds: number | null | undefined): string {
  if (!seconds) {
    return '';
  }
  return new Date(seconds * 1000).toLocaleString();
}

export function replace(el: HTMLElement, ...children: Child[]): void {
  el.replaceChildren(...(children.filter(Boolean) as (Node | string)[]));
}
