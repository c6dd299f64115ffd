/** A side panel that asks for news every few seconds while it is visible. */
import { Widget } from '@lumino/widgets';
import { Message } from '@lumino/messaging';

import { h, replace } from './dom';
import { tr } from './i18n';

export abstract class RefreshingPanel extends Widget {
  protected readonly body: HTMLElement;
  protected readonly errorBox: HTMLElement;
  private timer: number | undefined;
  private busy = false;

  constructor(
    id: string,
    private intervalSeconds: number
  ) {
    super();
    this.id = id;
    this.addClass('fednb-panel');
    this.errorBox = h('div', { className: 'fednb-error', role: 'alert' });
    this.body = h('div', { className: 'fednb-panel-body' });
    this.node.append(this.errorBox, this.body);
  }

  set interval(seconds: number) {
    this.intervalSeconds = seconds;
    if (this.timer !== undefined) {
      this.stop();
      this.start();
    }
  }

  /** Fetch and redraw; errors are shown above the content, which stays. */
  async refresh(): Promise<void> {
    if (this.busy) {
      return;
    }
    this.busy = true;
    try {
      await this.load();
      replace(this.errorBox);
    } catch (error) {
      replace(
        this.errorBox,
        tr('lab.error', { message: (error as Error).message })
      );
    } finally {
      this.busy = false;
    }
  }

  protected abstract load(): Promise<void>;

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.refresh();
    this.start();
  }

  protected onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    this.stop();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      void this.refresh();
      this.start();
    }
  }

  protected onBeforeDetach(msg: Message): void {
    this.stop();
    super.onBeforeDetach(msg);
  }

  private start(): void {
    if (this.timer === undefined) {
      this.timer = window.setInterval(() => {
        if (this.isVisible) {
          void this.refresh();
        }
      }, this.intervalSeconds * 1000);
    }
  }

  private stop(): void {
    if (this.timer !== undefined) {
      window.clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}
