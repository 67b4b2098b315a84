// The portal's own pages: deploy through the form, watch the job live,
// tear down by typing the name. The sandbox holds NAT gateways and the load
// balancer in their pending states for a few seconds, so the job is watched
// while it runs, not after.
import { expect, test } from '@playwright/test';
import { DeploymentPage, NewDeploymentForm, watchForErrors } from '../pages/portal';

test('deploy with the defaults, watch every step finish live, then tear down by typing the name', async ({
  page,
  request,
}, testInfo) => {
  test.setTimeout(150_000);
  const errors = watchForErrors(page);
  const form = new NewDeploymentForm(page);
  await form.goto();
  await page.screenshot({ path: testInfo.outputPath('new-deployment.png'), fullPage: true });
  await form.field('name').fill('e2e-form');
  await form.deploy.click();

  const deployment = new DeploymentPage(page);
  await expect(page).toHaveURL(/\/deployments\/[0-9a-f-]{36}$/);
  await expect(deployment.status).toHaveText('Deploying');
  // Live updates: some step is seen running before the job ends, with no reload.
  await expect(deployment.steps.filter({ has: page.locator('.state.running') }).first()).toBeVisible();
  await expect(deployment.status).toHaveText('Live', { timeout: 90_000 });
  const total = await deployment.steps.count();
  expect(total).toBe(29);
  await expect(page.locator('tbody tr[data-status="done"]')).toHaveCount(29);
  await expect(deployment.appUrl).toHaveAttribute('href', /^http:\/\/127\.0\.0\.1:\d+$/);
  // The link reaches the app: the sandbox's load balancer, then an instance.
  const app = await request.get(`${await deployment.appUrl.getAttribute('href')}/api/status`);
  expect(app.status()).toBe(200);
  expect((await app.json()).instanceId).toMatch(/^i-/);
  await page.screenshot({ path: testInfo.outputPath('deployment-live.png'), fullPage: true });

  const id = deployment.id();
  const detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(detail.status).toBe('live');
  expect(detail.jobs[0].source).toBe('browser');
  await expect(page.getByTestId('timeline')).toContainText('deploy requested');
  await expect(page.getByTestId('timeline')).toContainText('from browser');

  // Teardown asks for the name first.
  await deployment.teardownPanel.locator('summary').click();
  await expect(deployment.teardown).toBeDisabled();
  await deployment.confirmName.fill('e2e-wrong');
  await expect(deployment.teardown).toBeDisabled();
  await deployment.confirmName.fill('e2e-form');
  await expect(deployment.teardown).toBeEnabled();
  await deployment.teardown.click();
  await expect(deployment.status).toHaveText(/Tearing down|Torn down/);
  await expect(deployment.status).toHaveText('Torn down', { timeout: 90_000 });
  await page.screenshot({ path: testInfo.outputPath('deployment-torn-down.png'), fullPage: true });

  const after = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(after.status).toBe('torn_down');
  expect(after.resources.filter((r: { deleted_at: string | null }) => r.deleted_at === null)).toEqual([]);
  const verify = after.current_job.steps.find((s: { key: string }) => s.key === 'verify');
  expect(verify.status).toBe('done');
  expect(errors).toEqual([]);
});

test('a bad form shows each error next to its field and creates nothing', async ({ page, request }) => {
  const errors = watchForErrors(page);
  const form = new NewDeploymentForm(page);
  await form.goto();
  await form.field('name').fill('e2e-bad');
  await form.field('min').fill('4');
  await form.field('max').fill('2');
  await form.field('vpc_cidr').fill('10.0.0.0/33');
  await form.deploy.click();
  await expect(form.formErrors).toContainText('Nothing was created');
  await expect(form.errorFor('vpc_cidr')).toBeVisible();
  await expect(form.errorFor('min')).toBeVisible();
  await expect(form.field('vpc_cidr')).toHaveAttribute('aria-invalid', 'true');
  await expect(page).toHaveURL(/\/new$/);
  const list = await (await request.get('/api/v1/deployments?per_page=100')).json();
  expect(list.items.map((d: { name: string }) => d.name)).not.toContain('e2e-bad');
  expect(errors).toEqual([]);
});

test('the cost estimate follows the instance type and the NAT choice', async ({ page }) => {
  const form = new NewDeploymentForm(page);
  await form.goto();
  const start = await form.estimateHour.textContent();
  await form.field('instance_type').selectOption('m5.large');
  await expect(form.estimateHour).not.toHaveText(start ?? '');
  const bigger = await form.estimateHour.textContent();
  await page.getByTestId('nat-single').check();
  await expect(form.estimateHour).not.toHaveText(bigger ?? '');
  const parse = (text: string | null) => Number((text ?? '').replace(/[$,]/g, ''));
  expect(parse(await form.estimateHour.textContent())).toBeLessThan(parse(bigger));
  expect(parse(bigger)).toBeGreaterThan(parse(start));
  await form.field('region').selectOption('eu-west-1');
  await expect(page.getByTestId('estimate')).toContainText('eu-west-1');
});
