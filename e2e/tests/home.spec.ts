import { expect, test } from '@playwright/test';
import { DeploymentsPage, watchForErrors } from '../pages/portal';

// The suite shares one portal; no test makes a failed deployment, so the
// "failed" view is always the empty state.
test('the home page renders on the server, hydrates, and its control works', async ({ page }, testInfo) => {
  const errors = watchForErrors(page);
  const home = new DeploymentsPage(page);
  await home.goto('?status=failed');

  await expect(home.empty).toBeVisible();
  await expect(home.filters.getByRole('link', { name: 'Live' })).toHaveAttribute('href', '/?status=live');
  await expect(home.topBar.cloudStatus).toContainText('Sandbox cloud');

  // The button only comes alive once the wasm bundle has hydrated the page.
  await expect(home.topBar.recheck).toBeEnabled();
  await home.topBar.recheck.click();
  await expect(home.topBar.recheckResult).toContainText('reachable');
  await expect(home.topBar.cloudStatus).toContainText('connected');

  await page.screenshot({ path: testInfo.outputPath('deployments.png'), fullPage: true });
  expect(errors, 'console errors (a CSP violation shows up here)').toEqual([]);
});

test('without JavaScript the page still reads, and the control stays inert', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const home = new DeploymentsPage(page);
  await home.goto('?status=failed');
  await expect(home.empty).toBeVisible();
  await expect(home.topBar.cloudStatus).toContainText('Sandbox cloud');
  await expect(home.topBar.recheck).toBeDisabled();
  await context.close();
});

test('filtering by status is a link that works after hydration', async ({ page }) => {
  const home = new DeploymentsPage(page);
  await home.goto();
  await expect(home.topBar.recheck).toBeEnabled();
  await home.filters.getByRole('link', { name: 'Failed' }).click();
  await expect(page).toHaveURL(/\?status=failed$/);
  await expect(home.filters.getByRole('link', { name: 'Failed' })).toHaveAttribute('aria-current', 'page');
  await expect(home.filters.locator('[aria-current]')).toHaveCount(1);
  await expect(home.empty).toBeVisible();
});

test('pages carry a strict content security policy', async ({ request }) => {
  const response = await request.get('/');
  const csp = response.headers()['content-security-policy'];
  expect(csp).toContain("default-src 'self'");
  expect(csp).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9_-]{16,}'/);
  expect(response.headers()['x-content-type-options']).toBe('nosniff');
});
