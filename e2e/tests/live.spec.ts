// A live deployment as the portal shows it: charts that fill with samples,
// the topology, an instance terminated from its own page and replaced, and
// the cost and uptime pages agreeing with the REST API.
import { expect, test } from '@playwright/test';
import { deployLive, watchForErrors } from '../pages/portal';

/** `$1,234.56` or `$0.0123` as a number. */
function dollars(text: string): number {
  return Number(text.replace(/[$,<]/g, ''));
}

test('charts fill live, a terminate from the instance page is healed, cost and uptime match the API', async ({
  page,
  request,
}, testInfo) => {
  test.setTimeout(240_000);
  const errors = watchForErrors(page);
  const id: string = (await deployLive(request, { name: 'e2e-live' })).id;

  await page.goto(`/deployments/${id}`);
  // Samples arrive without a reload: the charts gain points.
  const capacity = page.getByTestId('chart-capacity');
  await expect(capacity).toBeVisible();
  await expect
    .poll(async () => Number(await capacity.getAttribute('data-points')), { timeout: 30_000 })
    .toBeGreaterThan(6);
  const cpu = page.getByTestId('chart-cpu');
  await expect
    .poll(async () => Number(await cpu.getAttribute('data-points')), { timeout: 30_000 })
    .toBeGreaterThan(0);
  await expect(cpu.locator('polyline.series')).toHaveCount(1);
  await expect(cpu.locator('line.rule')).toHaveCount(2);
  await expect(page.getByTestId('targets-timeline').locator('.target-row')).toHaveCount(2);
  const topology = page.getByTestId('topology');
  await expect(topology.getByTestId('zone')).toHaveCount(2);
  await expect(topology.locator('[data-testid="topology-instance"].healthy')).toHaveCount(2);
  // A range switch redraws from the API.
  await page.getByTestId('range-15m').click();
  await expect(page.getByTestId('range-15m')).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByTestId('poll-note')).toContainText('2 of 2 healthy targets');
  await page.screenshot({ path: testInfo.outputPath('deployment-health.png'), fullPage: true });
  // The README's picture (docs/health.png): the Health part alone.
  await page.locator('section.live-telemetry').screenshot({ path: testInfo.outputPath('health.png') });

  // Terminate one instance from its page.
  const rows = page.getByTestId('instance-row');
  await expect(rows).toHaveCount(2);
  const victim = (await rows.first().getAttribute('data-instance'))!;
  await rows.first().locator('a').click();
  await expect(page).toHaveURL(new RegExp(`/deployments/${id}/instances/${victim}$`));
  await expect(page.getByTestId('identity')).toContainText('us-east-1');
  await expect(page.getByTestId('identity')).toContainText('t3.micro');
  await expect
    .poll(async () => Number(await page.getByTestId('chart-instance-cpu').getAttribute('data-points')), {
      timeout: 30_000,
    })
    .toBeGreaterThan(0);
  await page.getByTestId('terminate-panel').locator('summary').click();
  await page.getByTestId('confirm-terminate').click();
  await expect(page.getByTestId('action-result')).toContainText(`${victim} is being terminated`);
  // The page follows the instance out of the group, without a reload.
  await expect(page.getByTestId('gone')).toBeVisible({ timeout: 30_000 });
  await expect(page.getByTestId('instance-state')).toHaveText('left the group');
  await expect(page.getByTestId('confirm-terminate')).toBeDisabled();
  await page.screenshot({ path: testInfo.outputPath('instance-terminated.png'), fullPage: true });

  // Back on the deployment page, a replacement is in service and healthy.
  await page.goto(`/deployments/${id}`);
  const healthy = page.locator('[data-testid="instance-row"][data-state="healthy"]');
  await expect(healthy).toHaveCount(2, { timeout: 30_000 });
  const now = await healthy.evaluateAll((r) => r.map((e) => e.getAttribute('data-instance')));
  expect(now).not.toContain(victim);
  await expect(page.locator(`[data-testid="instance-row"][data-instance="${victim}"]`)).toHaveAttribute(
    'data-state',
    'gone',
  );
  await expect(page.getByTestId('last-recovery')).not.toHaveText('none measured', { timeout: 30_000 });

  // Tear down through the API; then the figures stop moving and the pages
  // must show what the API says.
  const teardown = await request.post(`/api/v1/deployments/${id}/teardown`);
  expect(teardown.status()).toBe(202);
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${id}`)).json()).status, {
      timeout: 90_000,
    })
    .toBe('torn_down');

  // The page says what is gone: the stack as it was, every instance left,
  // the last reading as such.
  await page.goto(`/deployments/${id}`);
  await expect(page.getByTestId('topology-deleted')).toContainText('deleted with the stack');
  await expect(page.getByTestId('poll-note')).toContainText('last reading:');
  const states = await page
    .getByTestId('instance-row')
    .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-state')));
  expect(states.length).toBeGreaterThan(0);
  expect(states.every((s) => s === 'gone')).toBe(true);

  const cost = await (await request.get(`/api/v1/deployments/${id}/cost`)).json();
  expect(cost.hourly_usd).toBe(0);
  expect(cost.accrued_usd).toBeGreaterThan(0);
  await page.goto('/cost');
  const costRow = page.locator(`[data-testid="cost-row"][data-id="${id}"]`);
  await expect(costRow).toBeVisible();
  const shown = dollars(await costRow.getByTestId('row-accrued').innerText());
  expect(Math.abs(shown - cost.accrued_usd)).toBeLessThanOrEqual(0.00005);
  const all = await (await request.get('/api/v1/cost')).json();
  const total = dollars(await page.getByTestId('total-accrued').innerText());
  // Other deployments of this run may still be accruing.
  expect(total).toBeGreaterThanOrEqual(shown);
  expect(Math.abs(total - all.accrued_usd)).toBeLessThan(0.01);
  await page.screenshot({ path: testInfo.outputPath('cost.png'), fullPage: true });

  const uptime = await (await request.get(`/api/v1/deployments/${id}/uptime`)).json();
  expect(uptime.probes).toBeGreaterThan(0);
  await page.goto('/uptime');
  const uptimeRow = page.locator(`[data-testid="uptime-row"][data-id="${id}"]`);
  await expect(uptimeRow.getByTestId('row-availability')).toHaveText(
    `${uptime.availability_pct.toFixed(2)} %`,
  );
  await expect(uptimeRow).toContainText(`${uptime.probes} probes`);
  await page.screenshot({ path: testInfo.outputPath('uptime.png'), fullPage: true });
  expect(errors).toEqual([]);
});
