// Changing a live deployment from its page: the Edit part's form starts
// from its parameters; a change it cannot take is named at its field and
// changes nothing; "Review changes" shows the plan, "Apply" runs it and the
// page follows the job until the group has grown; a plan gone stale is
// refused with the reason on the page.
import { expect, test } from '@playwright/test';
import { deployLive, watchForErrors } from '../pages/portal';

test('edit a live deployment: refused field, plan, apply, followed to the end', async ({
  page,
  request,
}, testInfo) => {
  test.setTimeout(240_000);
  const errors = watchForErrors(page);
  const live = await deployLive(request, { name: 'e2e-edit', nat: 'single' });
  const id: string = live.id;

  await page.goto(`/deployments/${id}`);
  const panel = page.getByTestId('edit-panel');
  await panel.locator('summary').click();
  const review = panel.getByTestId('review-changes');
  await expect(review).toBeEnabled();
  const desired = panel.getByLabel('Desired');
  await expect(desired).toHaveValue('2');

  // The VPC range cannot change in place: said at the field, nothing planned.
  await panel.getByLabel('VPC range').fill('10.9.0.0/16');
  await review.click();
  await expect(panel.getByText(/cannot change in place/)).toBeVisible();
  await expect(panel.getByTestId('plan')).toHaveCount(0);
  await panel.getByLabel('VPC range').fill('10.0.0.0/16');

  await desired.fill('3');
  await review.click();
  const plan = panel.getByTestId('plan');
  await expect(plan).toBeVisible();
  const row = plan.getByRole('row', { name: /desired/ });
  await expect(row).toContainText('update in place');
  await expect(row).toContainText('2');
  await expect(row).toContainText('3');
  await expect(plan).toContainText('cost $');
  await page.screenshot({ path: testInfo.outputPath('plan.png'), fullPage: true });

  await plan.getByTestId('apply').click();
  // The page reloads and follows the apply job to its end.
  await expect(page.getByTestId('deployment-status')).toHaveText('Live');
  await expect
    .poll(
      async () => {
        const detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
        return detail.jobs.find((j: any) => j.kind === 'apply')?.status;
      },
      { timeout: 90_000 },
    )
    .toBe('done');
  const health = await (await request.get(`/api/v1/deployments/${id}/health`)).json();
  expect([health.group.desired, health.healthy_targets]).toEqual([3, 3]);
  const detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(detail.params.desired).toBe(3);

  // A plan gone stale (the budget changed after it was made) is refused
  // when applied, and the page says why; nothing changes.
  await page.goto(`/deployments/${id}`);
  await panel.locator('summary').click();
  await expect(review).toBeEnabled();
  await panel.getByLabel('Desired').fill('2');
  await review.click();
  await expect(panel.getByTestId('plan')).toBeVisible();
  const patched = await request.patch(`/api/v1/deployments/${id}`, { data: { cost_cap_usd: 50 } });
  expect(patched.status()).toBe(200);
  await panel.getByTestId('apply').click();
  await expect(page.getByTestId('apply-error')).toContainText('make a new plan');
  const after = await (await request.get(`/api/v1/deployments/${id}`)).json();
  expect(after.params.desired).toBe(3);

  const teardown = await request.post(`/api/v1/deployments/${id}/teardown`);
  expect(teardown.status()).toBe(202);
  expect(errors).toEqual([]);
});
