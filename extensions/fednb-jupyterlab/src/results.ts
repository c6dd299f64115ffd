/**
 * A released result as the small tables the server extension computed (fednb.widgets.released):
 * a histogram's bins, a crosstab's cells, a frame's rows; text only, never HTML.
 */
import { IResultTable } from './api';
import { h } from './dom';

const NUMBER = /^(−?∞|NA|-?[\d,]*\.?\d+(e[+-]?\d+)?)$/;

export function resultTables(tables: IResultTable[]): HTMLElement {
  return h(
    'div',
    { className: 'fednb-result-tables' },
    tables.map(t =>
      h(
        'div',
        { className: 'fednb-result-table' },
        t.caption ? h('div', { className: 'fednb-muted' }, t.caption) : null,
        h(
          'table',
          { className: 'fednb-result fednb-grid' },
          t.headers.some(x => x)
            ? h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  t.headers.map(x => h('th', {}, x))
                )
              )
            : null,
          h(
            'tbody',
            {},
            t.rows.map(row =>
              h(
                'tr',
                {},
                row.map(c =>
                  h('td', { className: NUMBER.test(c) ? 'fednb-num' : '' }, c)
                )
              )
            )
          )
        ),
        t.notes.map(n => h('div', { className: 'fednb-muted' }, n))
      )
    )
  );
}
