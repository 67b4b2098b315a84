// The budget in the browser: the countdown and its extend control on the
// deployments list and on the deployment's page, a TTL edited in the page's
// form (a bad value changes nothing), the TTL running out while the page is
// open, and "Deploy again" with the old parameters in the form.
import { expect, test } from '@playwright/test';
import { NewDeploymentForm, deployLive, watchForErrors } from '../pages/portal';

// The suite's sandbox runs at a tenth of AWS's time: a minute lasts 6 s, and
// the countdown shows from 15 such minutes (90 s) before the end.
const MINUTE_MS = 6_000;

/** The TTL (sandbox minutes from creation) that ends `ms` from now. */
function ttlEndingIn(createdAt: string, ms: number): number {
  return Math.ceil((Date.now() - Date.parse(createdAt) + ms) / MINUTE_MS);
}

test('countdown and extend on the list and the page, TTL running out, deploy again', async ({
  page,
  request,
}, testInfo) => {
  test.setTimeout(300_000);
  const errors = watchForErrors(page);
  // Ends 96 s after creation: inside the 90 s warning window from the start.
  const first = await deployLive(request, { name: 'e2e-budget', nat: 'single', ttl_minutes: 16 });
  const id: string = first.id;
  const expires = Date.parse(first.budget.expires_at);

  // The list: a ticking countdown and an extend button on the row.
  await page.goto('/');
  const row = page.getByTestId('row-e2e-budget');
  const countdown = row.getByTestId('ttl-countdown');
  await expect(countdown).toContainText(/Tears down in \d+:\d\d/);
  const before = await countdown.innerText();
  await expect(countdown).not.toHaveText(before, { timeout: 5_000 });
  await page.screenshot({ path: testInfo.outputPath('list-countdown.png'), fullPage: true });
  await row.getByTestId('extend').click();
  await expect(page).toHaveURL(/\/$/);
  await expect(row.getByTestId('ttl-countdown')).toHaveCount(0);
  await expect(row.getByTestId('list-ttl')).toContainText('until');
  let detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(detail.budget.ttl_minutes).toBe(76);
  expect(Date.parse(detail.budget.expires_at) - expires).toBe(60 * MINUTE_MS);

  // The page: its budget, and a bad value that changes nothing.
  await page.goto(`/deployments/${id}`);
  const budget = page.getByTestId('budget');
  await expect(budget.getByTestId('ttl')).toContainText('1 h 16 min');
  await expect(budget.getByTestId('ttl-countdown')).toHaveCount(0);
  await budget.locator('summary').click();
  await page.getByLabel('Time to live (min, from creation)').fill('soon');
  await page.getByTestId('budget-save').click();
  await expect(page.getByTestId('budget-error')).toContainText('"soon" is not a number');
  detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(detail.budget.ttl_minutes).toBe(76);

  // A TTL that ends in 40 s: the page counts down, extends, then lets it run out.
  await budget.locator('summary').click();
  await page.getByLabel('Time to live (min, from creation)').fill(String(ttlEndingIn(first.created_at, 40_000)));
  await page.getByTestId('budget-save').click();
  await expect(page.getByTestId('budget-error')).toHaveCount(0);
  await expect(budget.getByTestId('ttl-countdown')).toContainText(/Tears down in 0:[0-4]\d/);
  await expect(page.getByTestId('timeline')).toContainText('TTL set to');
  await page.screenshot({ path: testInfo.outputPath('page-countdown.png'), fullPage: true });
  // The page reloads itself once the guard has acted.
  await expect(page.getByTestId('deployment-status')).toHaveText(/Tearing down|Torn down/, { timeout: 60_000 });
  await expect(page.getByTestId('timeline')).toContainText('ran out');
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${id}`)).json()).status, { timeout: 90_000 })
    .toBe('torn_down');
  detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(detail.jobs[0].source).toBe('ttl');

  // Deploy again: the old parameters fill the form, editable first.
  await page.goto(`/deployments/${id}`);
  await page.getByTestId('redeploy').click();
  await expect(page).toHaveURL(new RegExp(`/new\\?from=${id}$`));
  const form = new NewDeploymentForm(page);
  await expect(form.deploy).toBeEnabled();
  await expect(page.getByTestId('redeploy-from')).toContainText('e2e-budget');
  await expect(form.field('name')).toHaveValue('e2e-budget');
  await expect(page.getByTestId('nat-single')).toBeChecked();
  await form.field('ttl_minutes').fill('');
  await form.field('cost_cap_usd').fill('5');
  await form.deploy.click();
  await expect(page).toHaveURL(/\/deployments\/[0-9a-f-]{36}$/);
  const again = new URL(page.url()).pathname.split('/').pop()!;
  expect(again).not.toBe(id);
  await expect(page.getByTestId('redeployed-from')).toHaveText('e2e-budget');
  await expect(page.getByTestId('ttl')).toContainText('none');
  await expect(page.getByTestId('cost-cap')).toHaveText('$5.00');
  const made = await (await request.get(`/api/v1/deployments/${again}`)).json();
  expect(made.params.nat).toBe('single');
  expect(made.params.ttl_minutes).toBe(0);
  expect(made.params.cost_cap_usd).toBe(5);
  await expect(page.getByTestId('deployment-status')).toHaveText('Live', { timeout: 90_000 });
  await page.screenshot({ path: testInfo.outputPath('redeployed.png'), fullPage: true });

  expect((await request.post(`/api/v1/deployments/${again}/teardown`)).status()).toBe(202);
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${again}`)).json()).status, { timeout: 90_000 })
    .toBe('torn_down');
  expect(errors).toEqual([]);
});
