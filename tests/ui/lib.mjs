// What the UI suite's test files share: the registry under test and its
// credentials (from tests/ui/run.sh), tokens the way clients get them, and
// Chromium driven by puppeteer-core with every request to another host
// aborted and remembered, so a test can assert that none was attempted.

import puppeteer from "puppeteer-core";

export const BASE = process.env.PIER_URL;
export const CREDENTIALS = process.env.PIER_AUTH_CREDENTIALS
  ? JSON.parse(await (await import("node:fs/promises")).readFile(process.env.PIER_AUTH_CREDENTIALS, "utf8"))
  : null;
export const SCREENSHOTS = process.env.PIER_UI_SCREENSHOTS || "";

export function basic(role) {
  const { username, password } = CREDENTIALS[role];
  return "Basic " + Buffer.from(`${username}:${password}`).toString("base64");
}

/** A token for `role` (null: anonymous) with `scopes`, from the token endpoint. */
export async function token(role, ...scopes) {
  const url = new URL("/token", BASE);
  url.searchParams.set("service", "pier");
  for (const scope of scopes) url.searchParams.append("scope", scope);
  const response = await fetch(url, { headers: role ? { Authorization: basic(role) } : {} });
  if (!response.ok) throw new Error(`token for ${role}: ${response.status}`);
  return (await response.json()).token;
}

/** Chromium, headless, the system's binary; `foreign` collects every request to another origin. */
export async function launch() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
  });
  const origin = new URL(BASE).origin;
  const foreign = [];
  await browser.defaultBrowserContext().overridePermissions(origin, ["clipboard-read", "clipboard-write", "clipboard-sanitized-write"]);
  const open = async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 860 });
    await page.setRequestInterception(true);
    page.on("request", (request) => {
      const url = request.url();
      if (url.startsWith("data:") || new URL(url).origin === origin) return request.continue();
      foreign.push(url);
      return request.abort("blockedbyclient");
    });
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    page.errors = errors;
    return page;
  };
  return { browser, open, foreign };
}

/** Texts of every element matching `selector`, once at least one is there. */
export async function texts(page, selector) {
  await page.waitForSelector(selector);
  return page.$$eval(selector, (elements) => elements.map((e) => e.textContent.trim()));
}

export async function screenshot(page, name) {
  if (!SCREENSHOTS) return;
  await page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
}

/** Signs in through the UI's form. */
export async function signIn(page, role) {
  await page.goto(`${BASE}/ui/#/signin`);
  await page.waitForSelector("form.signin input[name=username]");
  await page.type("input[name=username]", CREDENTIALS[role].username);
  await page.type("input[name=password]", CREDENTIALS[role].password);
  await Promise.all([page.waitForFunction(() => location.hash === "#/"), page.click("form.signin button[type=submit]")]);
  await page.waitForFunction((user) => document.querySelector("#session .who strong")?.textContent === user, {}, CREDENTIALS[role].username);
}
