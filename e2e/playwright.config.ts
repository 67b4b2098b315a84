// Playwright drives Debian's Chromium against a real portal started in
// sandbox mode (moto behind it) on a free port with a fresh database.
import { defineConfig } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A loopback port free now. */
function freePort(): string {
  return execFileSync(process.execPath, [
    '-e',
    "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{process.stdout.write(String(s.address().port));s.close()})",
  ]).toString();
}

// The config is evaluated again in each worker; the environment carries the
// first evaluation's choices over so every process agrees on one portal.
if (!process.env.CLOUDPULSE_E2E_PORT) {
  process.env.CLOUDPULSE_E2E_PORT = freePort();
}
// The sandbox's moto on a known port, for a test that changes the stack
// behind the portal's back (as someone would in the console).
if (!process.env.CLOUDPULSE_E2E_MOTO_PORT) {
  process.env.CLOUDPULSE_E2E_MOTO_PORT = freePort();
}
if (!process.env.CLOUDPULSE_E2E_DIR) {
  process.env.CLOUDPULSE_E2E_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'cloudpulse-e2e-'));
}

const port = process.env.CLOUDPULSE_E2E_PORT;
const root = path.resolve(__dirname, '..');
const bin = process.env.CLOUDPULSE_BIN ?? path.join(root, 'target/debug/cloudpulse');
const database = path.join(process.env.CLOUDPULSE_E2E_DIR, 'e2e.db');
export const baseURL = `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: './tests',
  outputDir: './test-results',
  timeout: 60_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  reporter: [['list']],
  use: {
    baseURL,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  webServer: {
    command: `"${bin}" sandbox --bind 127.0.0.1:${port} --database "${database}" --nat-pending-secs 30 --alb-provisioning-secs 20 --instance-boot-secs 30 --nat-deleting-secs 20 --eni-linger-secs 30 --ssm-registration-secs 20 --time-scale 0.1 --moto-port ${process.env.CLOUDPULSE_E2E_MOTO_PORT}`,
    url: `${baseURL}/healthz`,
    cwd: root,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe',
  },
});
