/**
 * The owner's review: a side panel listing pending requests on the domains they own, and a
 * review tab per request with the exact code (highlighted, read-only), the diff against the
 * version they approved before, and approve / deny with a reason.
 */
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { Widget } from '@lumino/widgets';

import {
  IComparison,
  IMockRow,
  IOwnerListing,
  IRequestDetail,
  IRequestRow,
  post,
  requestAPI,
  seg
} from './api';
import { badge, h, replace, when } from './dom';
import { stateLabel, tr } from './i18n';
import { resultTables } from './results';
import { RefreshingPanel } from './panel';

export type OpenReview = (row: IRequestRow) => void;

export class OwnerPanel extends RefreshingPanel {
  private readonly domainsBox = h('div', { className: 'fednb-owner-domains' });
  private readonly pendingBox = h('div', { className: 'fednb-pending' });
  private readonly recentBox = h('div', { className: 'fednb-recent' });
  private readonly mocksBox = h('div', { className: 'fednb-mocks' });

  constructor(
    intervalSeconds: number,
    private readonly open: OpenReview
  ) {
    super('fednb-review', intervalSeconds);
    this.title.caption = tr('lab.owner.caption');
    this.body.append(
      h('h2', {}, tr('lab.owner.title')),
      this.domainsBox,
      h('h3', {}, tr('lab.owner.pending')),
      this.pendingBox,
      h('h3', {}, tr('lab.owner.recent')),
      this.recentBox,
      h('h3', {}, tr('lab.owner.mocks')),
      this.mocksBox
    );
  }

  protected async load(): Promise<void> {
    const listing = await requestAPI<IOwnerListing>('owner/requests');
    replace(
      this.domainsBox,
      h(
        'ul',
        { className: 'fednb-list' },
        listing.domains.map(d =>
          h(
            'li',
            { className: 'fednb-muted' },
            h('span', { className: 'fednb-name' }, d.domain ?? '?'),
            ` · ${d.location}`,
            d.problem
              ? h('div', { className: 'fednb-reason' }, d.problem)
              : null
          )
        )
      )
    );
    replace(
      this.pendingBox,
      listing.pending.length
        ? h(
            'ul',
            { className: 'fednb-list' },
            listing.pending.map(r => this.row(r, true))
          )
        : h('div', { className: 'fednb-muted' }, tr('lab.owner.none_pending'))
    );
    replace(
      this.recentBox,
      h(
        'ul',
        { className: 'fednb-list' },
        listing.recent.map(r => this.row(r, false))
      )
    );
    replace(
      this.mocksBox,
      h(
        'ul',
        { className: 'fednb-list' },
        (listing.mocks ?? []).map(m => this.mockRow(m))
      )
    );
  }

  /** A dataset's mock: what analysts are served, with the report's utility and risk in one line. */
  private mockRow(m: IMockRow): HTMLElement {
    const figure = (x: number | null | undefined) =>
      x === null || x === undefined ? '–' : String(x);
    return h(
      'li',
      {
        className: 'fednb-mock-row',
        'data-domain': m.domain,
        'data-dataset': m.dataset
      },
      h(
        'div',
        {},
        h('span', { className: 'fednb-name' }, `${m.domain} · ${m.dataset}`),
        ' ',
        badge(m.status, tr(`lab.owner.mock.${m.status}`))
      ),
      h(
        'div',
        { className: 'fednb-muted' },
        tr('lab.owner.mock_summary', {
          tier: m.tier,
          correlation: figure(m.correlation_error),
          pmse: figure(m.pmse_ratio),
          exact: figure(m.exact_match_rate),
          closer: figure(m.closer_to_real)
        })
      )
    );
  }

  private row(r: IRequestRow, pending: boolean): HTMLElement {
    return h(
      'li',
      {
        className: `fednb-owner-request${pending ? ' fednb-clickable' : ''}`,
        'data-id': r.id,
        'data-domain': r.domain,
        'data-name': r.name,
        'data-status': r.status,
        title: tr('lab.owner.open', { name: r.name }),
        onclick: () => this.open(r)
      },
      h(
        'div',
        {},
        h('span', { className: 'fednb-name' }, `${r.kind}:${r.name}`),
        ' ',
        badge(r.status, stateLabel(r.status))
      ),
      h(
        'div',
        { className: 'fednb-muted' },
        `${r.domain} · ${r.dataset} · ${r.analyst} · ${when(r.created_at)}`
      ),
      r.description
        ? h('div', { className: 'fednb-description' }, r.description)
        : null,
      !pending && r.reason
        ? h('div', { className: 'fednb-reason' }, r.reason)
        : null
    );
  }
}

export class ReviewWidget extends Widget {
  private detail: IRequestDetail | null = null;
  private readonly reason = h('textarea', {
    className: 'fednb-reason-input',
    rows: 3,
    'aria-label': tr('lab.owner.reason')
  });
  private readonly message = h('div', {
    className: 'fednb-error',
    role: 'alert'
  });
  private readonly approveButton = h(
    'button',
    { className: 'jp-Button jp-mod-accept jp-mod-styled fednb-approve' },
    tr('lab.owner.approve')
  );
  private readonly denyButton = h(
    'button',
    { className: 'jp-Button jp-mod-warn jp-mod-styled fednb-deny' },
    tr('lab.owner.deny')
  );
  private readonly approveAllButton = h(
    'button',
    { className: 'jp-Button jp-mod-accept jp-mod-styled fednb-approve-all' },
    tr('lab.owner.approve_all')
  );
  private readonly outcomes = h('ul', {
    className: 'fednb-list fednb-approve-all-outcomes'
  });

  constructor(
    readonly domain: string,
    readonly requestId: string,
    private readonly languages: IEditorLanguageRegistry,
    private readonly decided: () => void
  ) {
    super();
    this.id = `fednb-review-${domain}-${requestId}`.replace(
      /[^A-Za-z0-9_-]/g,
      '_'
    );
    this.addClass('fednb-review-tab');
    this.approveButton.addEventListener('click', () => void this.decide(true));
    this.denyButton.addEventListener('click', () => void this.decide(false));
    this.approveAllButton.addEventListener(
      'click',
      () => void this.approveAll()
    );
    void this.load();
  }

  async load(): Promise<void> {
    try {
      this.detail = await requestAPI<IRequestDetail>(
        `owner/requests/${seg(this.domain)}/${seg(this.requestId)}`
      );
      await this.render(this.detail);
    } catch (error) {
      replace(
        this.message,
        tr('lab.error', { message: (error as Error).message })
      );
      if (!this.node.contains(this.message)) {
        this.node.append(this.message);
      }
    }
  }

  private async render(d: IRequestDetail): Promise<void> {
    this.title.label = tr('lab.owner.tab', { name: `${d.name} · ${d.domain}` });
    const facts: [string, string][] = [
      [tr('common.domain'), d.domain],
      [tr('common.dataset'), d.dataset],
      [tr('lab.owner.analyst'), d.analyst],
      [tr('lab.owner.submitted'), when(d.created_at)],
      [tr('common.description'), d.description || '–'],
      [tr('lab.owner.arguments'), JSON.stringify(d.args)],
      [tr('lab.owner.hash'), d.code_hash]
    ];
    if (d.kind !== 'builtin') {
      // what the job may load is part of what the owner approves (limits.columns, in the hash)
      facts.push([tr('lab.owner.columns'), declaredColumns(d.limits)]);
    }
    if (d.kind === 'function') {
      const check =
        d.unchecked_output === true
          ? 'unchecked'
          : d.unchecked_output === false
            ? 'checked'
            : 'unknown';
      facts.push([tr('lab.owner.output'), tr(`lab.owner.output.${check}`)]);
    }
    const pending = d.status === 'pending';
    this.approveButton.disabled = !pending;
    this.denyButton.disabled = !pending;
    this.approveAllButton.disabled = !pending;
    this.reason.disabled = !pending;
    const code = d.code
      ? await this.code(d.code)
      : h('div', { className: 'fednb-muted' }, tr('lab.owner.builtin'));
    replace(
      this.node,
      h(
        'div',
        { className: 'fednb-review' },
        h(
          'h2',
          {},
          `${d.kind}:${d.name} `,
          badge(d.status, stateLabel(d.status))
        ),
        d.reason
          ? h('div', { className: 'fednb-reason fednb-decision' }, d.reason)
          : null,
        h(
          'table',
          { className: 'fednb-facts' },
          facts.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))
        ),
        d.tables && d.tables.length
          ? h('h3', {}, tr('lab.owner.released'))
          : null,
        d.tables && d.tables.length ? resultTables(d.tables) : null,
        d.code ? h('h3', {}, tr('lab.owner.code')) : null,
        code,
        d.code ? this.comparison(d.previous ?? null) : null,
        pending
          ? h(
              'div',
              { className: 'fednb-decide' },
              h('label', {}, tr('lab.owner.reason'), this.reason),
              h(
                'div',
                { className: 'fednb-buttons' },
                this.approveButton,
                this.approveAllButton,
                this.denyButton
              ),
              this.message
            )
          : h(
              'div',
              { className: 'fednb-muted fednb-decided' },
              tr('lab.owner.decided_note'),
              this.message
            ),
        this.outcomes
      )
    );
  }

  /** The code, read-only, highlighted by JupyterLab's own CodeMirror language support. */
  private async code(source: string): Promise<HTMLElement> {
    const lines = source.replace(/\n$/, '').split('\n');
    const gutter = h(
      'pre',
      { className: 'fednb-gutter', 'aria-hidden': 'true' },
      lines.map((_, i) => `${i + 1}`).join('\n')
    );
    const pre = h('pre', { className: 'fednb-code cm-s-jupyter' });
    const language = this.languages.findBest('python');
    await this.languages.highlight(lines.join('\n'), language, pre);
    return h('div', { className: 'fednb-code-block' }, gutter, pre);
  }

  private comparison(previous: IComparison | null): HTMLElement {
    if (!previous) {
      return h(
        'div',
        { className: 'fednb-muted fednb-no-previous' },
        tr('lab.owner.no_previous')
      );
    }
    if (previous.identical) {
      return h(
        'div',
        { className: 'fednb-muted' },
        tr('lab.owner.identical', { id: previous.id })
      );
    }
    return h(
      'div',
      { className: 'fednb-diff-block' },
      h(
        'h3',
        {},
        tr('lab.owner.diff', { date: previous.date, id: previous.id })
      ),
      h(
        'pre',
        { className: 'fednb-diff' },
        previous.diff.map(l =>
          h(
            'div',
            {
              className: `fednb-diff-line fednb-diff-${{ '+': 'add', '-': 'del', ' ': 'ctx', '@': 'hunk' }[l.op]}`
            },
            l.op === '@' ? l.text : `${l.op} ${l.text}`
          )
        )
      )
    );
  }

  private async decide(approve: boolean): Promise<void> {
    const reason = this.reason.value.trim();
    if (!approve && !reason) {
      replace(this.message, tr('lab.owner.need_reason'));
      this.reason.focus();
      return;
    }
    this.approveButton.disabled = true;
    this.denyButton.disabled = true;
    try {
      await post(
        `owner/requests/${seg(this.domain)}/${seg(this.requestId)}/${approve ? 'approve' : 'deny'}`,
        { reason }
      );
      replace(this.message);
      this.decided();
      await this.load();
    } catch (error) {
      replace(
        this.message,
        tr('lab.error', { message: (error as Error).message })
      );
      this.approveButton.disabled = false;
      this.denyButton.disabled = false;
    }
  }

  /** Approve here and, with the same code hash, on every domain the owner's profile lists; each
   * domain audits its own approval; a domain whose copy has other code is named, not approved. */
  private async approveAll(): Promise<void> {
    this.approveButton.disabled = true;
    this.approveAllButton.disabled = true;
    this.denyButton.disabled = true;
    try {
      const answer = await post<{ outcomes: IApproveAllOutcome[] }>(
        `owner/requests/${seg(this.domain)}/${seg(this.requestId)}/approve-all`,
        { reason: this.reason.value.trim() }
      );
      replace(
        this.outcomes,
        ...answer.outcomes.map(o =>
          h(
            'li',
            {
              className: `fednb-outcome fednb-outcome-${o.status}`,
              'data-domain': o.domain
            },
            tr(`lab.owner.all.${o.status}`, {
              domain: o.domain,
              id: o.request ?? '',
              message: o.message
            })
          )
        )
      );
      replace(this.message);
      this.decided();
      await this.load();
    } catch (error) {
      replace(
        this.message,
        tr('lab.error', { message: (error as Error).message })
      );
      this.approveButton.disabled = false;
      this.approveAllButton.disabled = false;
      this.denyButton.disabled = false;
    }
  }
}

/** The columns a custom job may load, as its request declared them, or "every column". */
export function declaredColumns(limits: Record<string, unknown>): string {
  const columns = limits?.columns;
  return Array.isArray(columns) && columns.length
    ? columns.map(String).join(', ')
    : tr('lab.owner.columns.all');
}

interface IApproveAllOutcome {
  domain: string;
  status: 'approved' | 'hash_differs' | 'not_found' | 'error';
  request: string | null;
  code_hash: string | null;
  message: string;
}
