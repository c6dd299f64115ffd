/**
 * "Submit to federation…": the same as `%%fednb submit`, from the cell toolbar or context menu.
 * A dialog asks the kernel which datasets its federation has, lets the analyst pick one and write
 * a description; then the kernel submits the cell's function and its tracker widget appears under
 * the cell. Everything that decides anything runs in Python (fednb.jupyter.magic).
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { CodeCell } from '@jupyterlab/cells';
import { INotebookTracker } from '@jupyterlab/notebook';
import { OutputArea } from '@jupyterlab/outputarea';
import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { tr } from './i18n';

interface IOptions {
  datasets: { name: string; domains: string[] }[];
  functions: string[];
  error: string | null;
}

interface IChoice {
  dataset: string;
  description: string;
  name: string;
}

/** A Python string literal of `text` (a JSON string is one). */
function pyString(text: string): string {
  return JSON.stringify(text);
}

async function askKernel(
  tracker: INotebookTracker,
  source: string
): Promise<IOptions> {
  const kernel = tracker.currentWidget?.sessionContext.session?.kernel;
  if (!kernel) {
    throw new Error(tr('lab.submit.no_kernel'));
  }
  const expression = `__import__('fednb.jupyter.magic', fromlist=['ui_options']).ui_options(${pyString(source)})`;
  const future = kernel.requestExecute({
    code: '',
    silent: true,
    store_history: false,
    user_expressions: { fednb: expression }
  });
  const reply = await future.done;
  const answer = (reply.content as any).user_expressions?.fednb;
  if (!answer || answer.status !== 'ok') {
    throw new Error(answer?.evalue ?? 'no answer from the kernel');
  }
  return answer.data['application/json'] as IOptions;
}

class SubmitForm extends Widget {
  private readonly datasetSelect: HTMLSelectElement;
  private readonly description: HTMLTextAreaElement;
  private readonly fn: HTMLSelectElement;

  constructor(options: IOptions) {
    super();
    this.addClass('fednb-submit-form');
    this.datasetSelect = h(
      'select',
      {
        className: 'fednb-submit-dataset',
        'aria-label': tr('lab.submit.dataset')
      },
      options.datasets.map(d =>
        h('option', { value: d.name }, `${d.name} (${d.domains.join(', ')})`)
      )
    );
    this.fn = h(
      'select',
      { className: 'fednb-submit-function' },
      options.functions.map(f => h('option', { value: f }, f))
    );
    this.description = h('textarea', {
      className: 'fednb-submit-description',
      rows: 3,
      placeholder: tr('lab.submit.placeholder'),
      'aria-label': tr('lab.submit.description')
    });
    this.node.append(
      h('label', {}, tr('lab.submit.dataset'), this.datasetSelect),
      options.functions.length > 1
        ? h('label', {}, tr('lab.submit.function'), this.fn)
        : h('span'),
      h('label', {}, tr('lab.submit.description'), this.description)
    );
  }

  getValue(): IChoice {
    return {
      dataset: this.datasetSelect.value,
      description: this.description.value.trim(),
      name: this.fn.value
    };
  }
}

/** `work`, with a "Loading…" notification while it takes more than a second (the kernel may connect first). */
async function slowNotice<T>(work: Promise<T>): Promise<T> {
  let notice: string | undefined;
  const timer = window.setTimeout(() => {
    notice = Notification.emit(tr('common.loading'), 'in-progress', {
      autoClose: false
    });
  }, 1000);
  try {
    return await work;
  } finally {
    window.clearTimeout(timer);
    if (notice) {
      Notification.dismiss(notice);
    }
  }
}

export async function submitActiveCell(
  tracker: INotebookTracker
): Promise<void> {
  const panel = tracker.currentWidget;
  const cell = tracker.activeCell;
  if (!panel || !(cell instanceof CodeCell)) {
    await showDialog({
      title: tr('lab.submit.command'),
      body: tr('lab.submit.not_code'),
      buttons: [Dialog.okButton()]
    });
    return;
  }
  const source = cell.model.sharedModel.getSource();
  let options: IOptions;
  try {
    options = await slowNotice(askKernel(tracker, source));
  } catch (error) {
    await showDialog({
      title: tr('lab.submit.command'),
      body: tr('lab.error', { message: (error as Error).message }),
      buttons: [Dialog.okButton()]
    });
    return;
  }
  if (options.error || !options.datasets.length || !options.functions.length) {
    const why =
      options.error ??
      (options.functions.length ? '' : tr('lab.submit.not_code'));
    await showDialog({
      title: tr('lab.submit.command'),
      body: options.functions.length
        ? tr('lab.submit.no_datasets', { why })
        : why,
      buttons: [Dialog.okButton()]
    });
    return;
  }
  const result = await showDialog<IChoice>({
    title: tr('lab.submit.title', { name: options.functions.join(', ') }),
    body: new SubmitForm(options),
    buttons: [
      Dialog.cancelButton({ label: tr('lab.submit.cancel') }),
      Dialog.okButton({ label: tr('lab.submit.ok') })
    ]
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  const payload = JSON.stringify({ source, ...result.value });
  const code = `__import__('fednb.jupyter.magic', fromlist=['submit_from_ui']).submit_from_ui(${pyString(payload)})`;
  cell.outputArea.model.clear();
  // as when the cell runs: the analyst ran this, so its outputs (the tracker widget) may render
  cell.model.trusted = true;
  await OutputArea.execute(code, cell.outputArea, panel.sessionContext);
}
