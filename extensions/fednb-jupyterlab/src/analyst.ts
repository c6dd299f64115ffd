/**
 * The analyst's panel: the profile's domains, their datasets, and my requests with each domain's
 * state, the owner's reason and what a domain released.
 */
import {
  IDatasetRow,
  IDomainRow,
  IPart,
  IRequestDetail,
  ISubmission,
  requestAPI,
  seg
} from './api';
import { badge, h, replace, when } from './dom';
import { label, stateLabel, tr } from './i18n';
import { RefreshingPanel } from './panel';
import { resultTables } from './results';

const SHOWN_SUBMISSIONS = 25;
const METADATA_EVERY = 5; // domains and datasets change rarely: every 5th refresh

export class AnalystPanel extends RefreshingPanel {
  private readonly domainsBox = h('div', { className: 'fednb-domains' });
  private readonly datasetsBox = h('div', { className: 'fednb-datasets' });
  private readonly requestsBox = h('div', { className: 'fednb-requests' });
  private readonly whoBox = h('div', { className: 'fednb-muted' });
  private readonly results = new Map<string, IRequestDetail>();
  private turn = 0;

  constructor(intervalSeconds: number) {
    super('fednb-analyst', intervalSeconds);
    this.title.caption = tr('lab.analyst.caption');
    this.body.append(
      h('h2', {}, tr('lab.analyst.title')),
      this.whoBox,
      h('h3', {}, tr('lab.analyst.domains')),
      this.domainsBox,
      h('h3', {}, tr('lab.analyst.datasets')),
      this.datasetsBox,
      h('h3', {}, tr('lab.analyst.requests')),
      this.requestsBox
    );
  }

  protected async load(): Promise<void> {
    if (this.turn++ % METADATA_EVERY === 0) {
      const [domains, datasets] = await Promise.all([
        requestAPI<IDomainRow[]>('analyst/domains'),
        requestAPI<IDatasetRow[]>('analyst/datasets')
      ]);
      this.showDomains(domains);
      this.showDatasets(datasets);
    }
    const { submissions, problems } = await requestAPI<{
      submissions: ISubmission[];
      problems: Record<string, string>;
    }>('analyst/requests');
    await this.fetchResults(submissions.slice(0, SHOWN_SUBMISSIONS));
    this.showRequests(submissions.slice(0, SHOWN_SUBMISSIONS), problems);
  }

  private showDomains(rows: IDomainRow[]): void {
    const who = rows.find(r => r.analyst)?.analyst;
    replace(this.whoBox, who ? tr('lab.analyst.as', { analyst: who }) : '');
    replace(
      this.domainsBox,
      h(
        'ul',
        { className: 'fednb-list' },
        rows.map(r =>
          h(
            'li',
            { className: 'fednb-domain', 'data-domain': r.domain },
            h('span', { className: 'fednb-name' }, r.domain),
            ' ',
            badge(r.up ? 'up' : 'down', tr(r.up ? 'fed.up' : 'fed.down')),
            h(
              'div',
              { className: 'fednb-muted' },
              r.up
                ? `${r.url} · ${label('isolation', r.isolation)} · v${r.version ?? ''}`
                : `${r.url} · ${r.problem}`
            )
          )
        )
      )
    );
  }

  private showDatasets(rows: IDatasetRow[]): void {
    replace(
      this.datasetsBox,
      h(
        'ul',
        { className: 'fednb-list' },
        rows.map(r =>
          h(
            'li',
            { className: 'fednb-dataset', 'data-dataset': r.name },
            h('span', { className: 'fednb-name' }, r.name),
            ' ',
            h(
              'span',
              { className: 'fednb-muted' },
              `${r.domain} · ${tr('common.approx_rows', { rows: r.rows })} ${tr('common.rows').toLowerCase()}`
            ),
            h(
              'div',
              { className: 'fednb-muted fednb-columns' },
              r.columns.join(', ')
            ),
            r.description ? h('div', {}, r.description) : null
          )
        )
      )
    );
  }

  /** Released results of done parts, fetched once each (they never change). */
  private async fetchResults(submissions: ISubmission[]): Promise<void> {
    const wanted = submissions
      .flatMap(s => s.parts)
      .filter(p => p.status === 'done' && !this.results.has(key(p)));
    const details = await Promise.all(
      wanted.map(p =>
        requestAPI<IRequestDetail>(
          `analyst/requests/${seg(p.domain)}/${seg(p.id)}`
        ).catch(() => null)
      )
    );
    details.forEach((d, i) => {
      if (d) {
        this.results.set(key(wanted[i]), d);
      }
    });
  }

  private showRequests(
    submissions: ISubmission[],
    problems: Record<string, string>
  ): void {
    const items = submissions.map(s =>
      h(
        'li',
        {
          className: 'fednb-submission',
          'data-name': s.name,
          'data-description': s.description
        },
        h(
          'div',
          {},
          h('span', { className: 'fednb-name' }, `${s.kind}:${s.name}`),
          ' · ',
          s.dataset,
          h('span', { className: 'fednb-muted' }, ` · ${when(s.created_at)}`)
        ),
        s.description
          ? h('div', { className: 'fednb-description' }, s.description)
          : null,
        h(
          'ul',
          { className: 'fednb-parts' },
          s.parts.map(p => this.part(p))
        )
      )
    );
    const notes = Object.entries(problems).map(([d, why]) =>
      h('div', { className: 'fednb-muted' }, `${d}: ${why}`)
    );
    replace(
      this.requestsBox,
      items.length
        ? h('ul', { className: 'fednb-list' }, items)
        : h('div', { className: 'fednb-muted' }, tr('lab.analyst.no_requests')),
      ...notes
    );
  }

  private part(p: IPart): HTMLElement {
    const detail = this.results.get(key(p));
    const why =
      p.status === 'denied'
        ? tr('why.denied', { reason: p.reason ?? '' })
        : p.status === 'blocked'
          ? tr('why.blocked', { reason: p.reason ?? '' })
          : p.status === 'failed'
            ? tr('why.failed', { reason: p.reason ?? '' })
            : p.status === 'pending'
              ? tr('why.waiting')
              : '';
    return h(
      'li',
      {
        className: `fednb-part fednb-part-${p.status}`,
        'data-domain': p.domain,
        'data-status': p.status
      },
      h('span', { className: 'fednb-name' }, p.domain),
      ' ',
      badge(p.status, stateLabel(p.status)),
      why
        ? h(
            'div',
            {
              className: p.status === 'pending' ? 'fednb-muted' : 'fednb-reason'
            },
            why
          )
        : null,
      detail && detail.tables && detail.tables.length
        ? resultTables(detail.tables)
        : detail && detail.result.length
          ? h(
              'table',
              { className: 'fednb-result' },
              detail.result.map(r =>
                h(
                  'tr',
                  {},
                  h('th', {}, r.key),
                  h('td', {}, h('pre', {}, r.value))
                )
              )
            )
          : null
    );
  }
}

function key(p: IPart): string {
  return `${p.domain}/${p.id}`;
}
