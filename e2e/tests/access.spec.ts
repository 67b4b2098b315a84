// Accessibility: every page is checked by axe-core (WCAG 2.1 A and AA,
// contrast included), used by keyboard alone, and laid out at a phone's
// width without sideways scrolling.
import { expect, test, type APIRequestContext, type Page } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NewDeploymentForm } from '../pages/portal';

const AXE = fs.readFileSync(path.join(__dirname, '../../node_modules/axe-core/axe.min.js'), 'utf8');

type Violation = { id: string; impact: string; help: string; nodes: { target: string[] }[] };

/** Runs axe-core in the page (evaluated, so the CSP does not block it). */
async function axeViolations(page: Page): Promise<string[]> {
  await page.evaluate(AXE);
  const { violations, passed } = await page.evaluate(async () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const axe = (window as any).axe;
    const result = await axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    });
    return { violations: result.violations as Violation[], passed: result.passes.length as number };
  });
  // Proof that the rules ran (labels, contrast, landmarks, names, ...).
  expect(passed, 'axe-core checked the page').toBeGreaterThan(10);
  return violations.map(
    (v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`,
  );
}

/** A deployment to look at; it need not be live for its page to render. */
async function someDeployment(request: APIRequestContext): Promise<string> {
  const created = await request.post('/api/v1/deployments', { data: { name: 'e2e-access', nat: 'single' } });
  expect(created.status()).toBe(202);
  const { deployment } = await created.json();
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${deployment.id}`)).json()).status, {
      timeout: 60_000,
    })
    .toBe('live');
  return deployment.id;
}

/** An instance the portal's poller has seen in the deployment's group. */
async function someInstance(request: APIRequestContext, id: string): Promise<string> {
  let instance = '';
  await expect
    .poll(
      async () => {
        const live = await (await request.get(`/api/v1/deployments/${id}/live`)).json();
        instance = live.instances?.[0]?.id ?? '';
        return instance;
      },
      { timeout: 30_000 },
    )
    .toMatch(/^i-/);
  return instance;
}

async function tearDown(request: APIRequestContext, id: string) {
  expect((await request.post(`/api/v1/deployments/${id}/teardown`)).status()).toBe(202);
  await expect
    .poll(async () => (await (await request.get(`/api/v1/deployments/${id}`)).json()).status, {
      timeout: 60_000,
    })
    .toBe('torn_down');
}

test('every page passes axe-core and fits a phone without sideways scrolling', async ({ page, request }, testInfo) => {
  test.setTimeout(150_000);
  const id = await someDeployment(request);
  const pages = [
    ['deployments', '/'],
    ['new-deployment', '/new'],
    ['deployment', `/deployments/${id}`],
    ['unknown-deployment', '/deployments/no-such-deployment'],
    ['instance', `/deployments/${id}/instances/${await someInstance(request, id)}`],
    ['cost', '/cost'],
    ['uptime', '/uptime'],
  ];
  const widths = [
    ['desktop', 1280, 900],
    ['phone', 360, 740],
  ] as const;
  for (const [label, width, height] of widths) {
    await page.setViewportSize({ width, height });
    for (const [name, url] of pages) {
      await page.goto(url);
      await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
      // After hydration, so what is checked is what a person uses.
      await expect(page.getByTestId('recheck-cloud')).toBeEnabled();
      expect(await axeViolations(page), `${name} at ${label} width`).toEqual([]);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, `${name} scrolls sideways by ${overflow}px at ${width}px`).toBeLessThanOrEqual(0);
      await page.screenshot({ path: testInfo.outputPath(`${name}-${label}.png`), fullPage: true });
    }
  }
  await tearDown(request, id);
});

test('a deployment can be made with the keyboard alone, with focus always visible', async ({ page, request }) => {
  test.setTimeout(150_000);
  const form = new NewDeploymentForm(page);
  await form.goto();

  // The first Tab reaches the skip link, which jumps past the top bar.
  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', { name: /skip to content/i })).toBeFocused();
  await page.keyboard.press('Enter');
  await page.keyboard.press('Tab');
  await expect(form.field('name')).toBeFocused();

  // Tab order follows the page: every field, in the order shown, then Deploy.
  const order: string[] = [];
  const outlines: string[] = [];
  for (let i = 0; i < 40; i++) {
    const focused = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement;
      const style = getComputedStyle(el);
      return {
        id: el.dataset.testid ?? el.id ?? el.tagName,
        outline: `${style.outlineStyle} ${style.outlineWidth}`,
      };
    });
    order.push(focused.id);
    outlines.push(`${focused.id}: ${focused.outline}`);
    if (focused.id === 'deploy') break;
    await page.keyboard.press('Tab');
  }
  expect(order.at(-1), `tab order: ${order.join(' → ')}`).toBe('deploy');
  const fields = await page.locator('form [data-testid^="field-"]').evaluateAll((els) =>
    els.map((el) => (el as HTMLElement).dataset.testid),
  );
  expect(order.filter((id) => id.startsWith('field-'))).toEqual(fields);
  for (const line of outlines) expect(line, 'a visible focus outline').not.toMatch(/: none|: \S+ 0px$/);

  // Fill the name by keyboard and submit with Enter from a field.
  await form.field('name').focus();
  await page.keyboard.type('e2e-keys');
  await page.keyboard.press('Enter');
  await expect(page).toHaveURL(/\/deployments\/[0-9a-f-]{36}$/);
  const id = page.url().split('/').pop() as string;
  await expect(page.getByTestId('deployment-status')).toHaveText('Live', { timeout: 90_000 });
  await tearDown(request, id);
});
