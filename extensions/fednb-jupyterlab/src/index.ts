/**
 * fednb in JupyterLab: the analyst's federation panel, the owner's review panel and review tabs,
 * and "Submit to federation…" on code cells.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  WidgetTracker
} from '@jupyterlab/apputils';
import { IEditorLanguageRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITranslator } from '@jupyterlab/translation';

import { AnalystPanel } from './analyst';
import { federationIcon, reviewIcon } from './icons';
import { loadStrings, tr } from './i18n';
import { OwnerPanel, ReviewWidget } from './owner';
import { submitActiveCell } from './submit';

const PLUGIN_ID = 'fednb-jupyterlab:plugin';

const COMMANDS = {
  submit: 'fednb:submit-cell',
  openReview: 'fednb:open-review',
  analyst: 'fednb:show-federation',
  owner: 'fednb:show-review'
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'fednb: federation and review panels, Submit to federation…',
  autoStart: true,
  requires: [
    ITranslator,
    INotebookTracker,
    IEditorLanguageRegistry,
    ISettingRegistry
  ],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: async (
    app: JupyterFrontEnd,
    translator: ITranslator,
    notebooks: INotebookTracker,
    languages: IEditorLanguageRegistry,
    settingRegistry: ISettingRegistry,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    // The command must exist before the cell toolbar asks for its label; its label follows the strings.
    app.commands.addCommand(COMMANDS.submit, {
      label: () => tr('lab.submit.command'),
      caption: () => tr('lab.submit.command'),
      icon: federationIcon,
      isEnabled: () => notebooks.activeCell?.model.type === 'code',
      execute: () => submitActiveCell(notebooks)
    });

    try {
      await loadStrings(translator);
    } catch (error) {
      console.error(
        "fednb: the server extension did not answer; is fednb installed in the server's environment?",
        error
      );
      return;
    }
    let refreshSeconds = 3;
    try {
      const settings = await settingRegistry.load(PLUGIN_ID);
      refreshSeconds = settings.get('refreshSeconds').composite as number;
    } catch {
      // defaults
    }

    const analyst = new AnalystPanel(refreshSeconds);
    analyst.title.icon = federationIcon;
    app.shell.add(analyst, 'left', { rank: 850 });

    const reviews = new WidgetTracker<MainAreaWidget<ReviewWidget>>({
      namespace: 'fednb-review'
    });
    const owner = new OwnerPanel(
      refreshSeconds,
      row =>
        void app.commands.execute(COMMANDS.openReview, {
          domain: row.domain,
          id: row.id
        })
    );
    owner.title.icon = reviewIcon;
    app.shell.add(owner, 'left', { rank: 851 });

    app.commands.addCommand(COMMANDS.openReview, {
      label: args => tr('lab.owner.open', { name: String(args.id ?? '') }),
      execute: args => {
        const domain = String(args.domain);
        const id = String(args.id);
        const existing = reviews.find(
          w => w.content.domain === domain && w.content.requestId === id
        );
        if (existing) {
          app.shell.activateById(existing.id);
          return;
        }
        const content = new ReviewWidget(
          domain,
          id,
          languages,
          () => void owner.refresh()
        );
        const widget = new MainAreaWidget({ content });
        widget.id = content.id;
        widget.title.label = tr('lab.owner.tab', { name: id });
        widget.title.icon = reviewIcon;
        widget.title.closable = true;
        void reviews.add(widget);
        app.shell.add(widget, 'main');
        app.shell.activateById(widget.id);
      }
    });
    app.commands.addCommand(COMMANDS.analyst, {
      label: () => tr('lab.analyst.caption'),
      execute: () => app.shell.activateById(analyst.id)
    });
    app.commands.addCommand(COMMANDS.owner, {
      label: () => tr('lab.owner.caption'),
      execute: () => app.shell.activateById(owner.id)
    });
    if (palette) {
      for (const command of [
        COMMANDS.analyst,
        COMMANDS.owner,
        COMMANDS.submit
      ]) {
        palette.addItem({ command, category: 'fednb' });
      }
    }
    if (restorer) {
      restorer.add(analyst, analyst.id);
      restorer.add(owner, owner.id);
    }
  }
};

export default plugin;
