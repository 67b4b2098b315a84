// Drift from the deployment's page: a rule added behind the portal's back
// (through the sandbox's AWS API, as someone would in the console) shows
// in the Drift part after "Check now", with what it breaks and no Accept
// (the parameters cannot say a rule); the list carries a badge; "Repair"
// runs the job that takes the rule away, and the part says the stack
// matches its parameters again.
import { expect, test } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { deployLive, watchForErrors } from '../pages/portal';

/** Opens SSH to the world on the deployment's app security group, through
 * the sandbox's moto with the keys of its all-allowed identity
 * (`cloudpulse_sandbox::iam::SERVICE_KEY`). */
function openSsh(deployment: string): void {
  const python =
    process.env.CLOUDPULSE_MOTO_PYTHON ?? path.resolve(__dirname, '../../.venv/bin/python');
  const script = `
import sys, boto3
ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="AKIACLOUDPULSESBXAWS",
                   aws_secret_access_key="cloudpulse-sandbox-aws-secret-not-for-aws")
groups = ec2.describe_security_groups(Filters=[
    {"Name": "tag:cloudpulse:deployment", "Values": [sys.argv[2]]}])["SecurityGroups"]
app = [g for g in groups if g["GroupName"].endswith("-app")][0]
ec2.authorize_security_group_ingress(GroupId=app["GroupId"], IpPermissions=[
    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
     "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
`;
  const endpoint = `http://127.0.0.1:${process.env.CLOUDPULSE_E2E_MOTO_PORT}`;
  execFileSync(python, ['-c', script, endpoint, deployment], { stdio: 'inherit' });
}

test('drift: found on the page, badged on the list, repaired', async ({
  page,
  request,
}, testInfo) => {
  test.setTimeout(240_000);
  const errors = watchForErrors(page);
  const live = await deployLive(request, { name: 'e2e-drift', nat: 'single' });
  const id: string = live.id;

  await page.goto(`/deployments/${id}`);
  const drift = page.getByTestId('drift');
  await expect(drift).toContainText('Drift');
  openSsh(id);
  await drift.getByTestId('drift-check').click();
  const row = drift.getByTestId('drift-finding');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('tcp 22 from 0.0.0.0/0');
  await expect(row).toContainText('absent');
  await expect(row).toContainText('opens more than the stack needs');
  await expect(row.getByTestId('drift-accept')).toHaveCount(0);
  await expect(drift.getByTestId('drift-count')).toHaveText('1');
  await page.screenshot({ path: testInfo.outputPath('drift.png'), fullPage: true });

  await page.goto('/');
  const badge = page.getByTestId('drift-badge');
  await expect(badge).toHaveText('drift · 1');
  await badge.click();
  await expect(page).toHaveURL(new RegExp(`/deployments/${id}`));

  await page.getByTestId('drift').getByTestId('drift-repair').click();
  await expect
    .poll(
      async () => {
        const detail = await (await request.get(`/api/v1/deployments/${id}`)).json();
        return detail.jobs.find((j: any) => j.kind === 'apply')?.status;
      },
      { timeout: 90_000 },
    )
    .toBe('done');
  const report = await (await request.get(`/api/v1/deployments/${id}/drift`)).json();
  expect(report.findings).toEqual([]);
  // The page follows the repair job and loads itself again when it ends.
  await expect(page.getByTestId('drift')).toContainText('The stack matches its parameters.', {
    timeout: 30_000,
  });

  const teardown = await request.post(`/api/v1/deployments/${id}/teardown`);
  expect(teardown.status()).toBe(202);
  expect(errors).toEqual([]);
});
