// Page objects: what a person sees and does, named as they would name it.
import { expect, type Locator, type Page } from '@playwright/test';

export class TopBar {
  readonly cloudStatus: Locator;
  readonly recheck: Locator;
  readonly recheckResult: Locator;

  constructor(readonly page: Page) {
    this.cloudStatus = page.getByTestId('cloud-status');
    this.recheck = page.getByRole('button', { name: /check connection/i });
    this.recheckResult = page.getByTestId('recheck-result');
  }
}

export class DeploymentsPage {
  readonly heading: Locator;
  readonly empty: Locator;
  readonly filters: Locator;
  readonly topBar: TopBar;

  constructor(readonly page: Page) {
    this.heading = page.getByRole('heading', { level: 1, name: 'Deployments' });
    this.empty = page.getByTestId('deployments-empty');
    this.filters = page.getByRole('navigation', { name: 'Filter by status' });
    this.topBar = new TopBar(page);
  }

  /** Opens the list, optionally filtered (e.g. "?status=failed"). */
  async goto(query = '') {
    await this.page.goto(`/${query}`);
    await expect(this.heading).toBeVisible();
  }
}

/** Fails the test on any console error or uncaught exception (CSP violations included). */
export function watchForErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  return errors;
}
