import { expect, test, type APIRequestContext } from '@playwright/test';
import { DeploymentsPage } from '../pages/portal';

async function waitForStatus(request: APIRequestContext, id: string, status: string) {
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${id}`)).json()).status, {
      timeout: 60_000,
    })
    .toBe(status);
}

test('a deployment made through the API shows in the list with its status', async ({ page, request }, testInfo) => {
  const created = await request.post('/api/v1/deployments', { data: { name: 'e2e-list', nat: 'single' } });
  expect(created.status()).toBe(202);
  const { deployment } = await created.json();
  await waitForStatus(request, deployment.id, 'live');

  const home = new DeploymentsPage(page);
  await home.goto();
  const row = page.getByRole('row', { name: /e2e-list/ });
  await expect(row).toContainText('Live');
  await expect(row).toContainText('us-east-1');

  await expect(home.topBar.recheck).toBeEnabled();
  await home.filters.getByRole('link', { name: 'Torn down' }).click();
  await expect(page.getByRole('row', { name: /e2e-list/ })).toHaveCount(0);
  await home.filters.getByRole('link', { name: 'Live' }).click();
  await expect(page.getByRole('row', { name: /e2e-list/ })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath('deployments-with-data.png'), fullPage: true });

  const teardown = await request.post(`/api/v1/deployments/${deployment.id}/teardown`);
  expect(teardown.status()).toBe(202);
  await waitForStatus(request, deployment.id, 'torn_down');
  await page.reload();
  await expect(page.getByRole('row', { name: /e2e-list/ })).toHaveCount(0);
  await home.filters.getByRole('link', { name: 'All' }).click();
  await expect(page.getByRole('row', { name: /e2e-list/ })).toContainText('Torn down');
});

test('a cross-site POST to the API is refused and creates nothing', async ({ request }) => {
  const refused = await request.post('/api/v1/deployments', {
    data: { name: 'e2e-csrf' },
    headers: { Origin: 'http://evil.example', 'Sec-Fetch-Site': 'cross-site' },
  });
  expect(refused.status()).toBe(403);
  const list = await (await request.get('/api/v1/deployments')).json();
  expect(list.items.map((d: { name: string }) => d.name)).not.toContain('e2e-csrf');
});
