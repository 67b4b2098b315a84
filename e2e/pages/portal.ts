// Page objects: what a person sees and does, named as they would name it.
import { expect, type APIRequestContext, type Locator, type Page } from '@playwright/test';

/** Deploys through the API, waits until live, and returns the deployment. */
export async function deployLive(request: APIRequestContext, data: object): Promise<any> {
  const created = await request.post('/api/v1/deployments', { data });
  expect(created.status()).toBe(202);
  const id: string = (await created.json()).deployment.id;
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${id}`)).json()).status, {
      timeout: 90_000,
    })
    .toBe('live');
  return (await request.get(`/api/v1/deployments/${id}`)).json();
}

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

export class NewDeploymentForm {
  readonly heading: Locator;
  readonly deploy: Locator;
  readonly estimateHour: Locator;
  readonly estimateMonth: Locator;
  readonly formErrors: Locator;

  constructor(readonly page: Page) {
    this.heading = page.getByRole('heading', { level: 1, name: 'New deployment' });
    this.deploy = page.getByTestId('deploy');
    this.estimateHour = page.getByTestId('estimate-hour');
    this.estimateMonth = page.getByTestId('estimate-month');
    this.formErrors = page.getByTestId('form-errors');
  }

  async goto() {
    await this.page.goto('/new');
    await expect(this.heading).toBeVisible();
    // The button turns on once the page has hydrated.
    await expect(this.deploy).toBeEnabled();
  }

  field(name: string): Locator {
    return this.page.getByTestId(`field-${name}`);
  }

  errorFor(name: string): Locator {
    return this.page.getByTestId(`error-${name}`);
  }
}

export class DeploymentPage {
  readonly status: Locator;
  readonly steps: Locator;
  readonly appUrl: Locator;
  readonly teardownPanel: Locator;
  readonly confirmName: Locator;
  readonly teardown: Locator;

  constructor(readonly page: Page) {
    this.status = page.getByTestId('deployment-status');
    this.steps = page.getByTestId('steps').locator('tbody tr[data-status]');
    this.appUrl = page.getByTestId('app-url');
    this.teardownPanel = page.getByTestId('teardown-panel');
    this.confirmName = page.getByTestId('confirm-name');
    this.teardown = page.getByTestId('teardown');
  }

  /** The deployment id in the address bar. */
  id(): string {
    return new URL(this.page.url()).pathname.split('/').pop() ?? '';
  }
}
