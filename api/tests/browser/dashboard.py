#!/usr/bin/env python3
"""The dashboard in a real headless Chromium.

Runs the sample formula with `croo run`, makes a viewer key with
`croo keys add`, serves the store with `croo serve`, then loads `/` in
Debian's Chromium (through chromedriver and Selenium), enters the key and
checks that the charts show the numbers of the store: every point of the
score trend, every bar of the breakdown and every step of the waterfall;
that the status tiles, the customers table (sorted, paged) and one
customer's history show what the API answers; that at laptop and tablet
widths every chart label is at least 12 px and inside its chart; that
axe-core (vendored by .ci/api-checks, AXE_JS) finds no serious or critical
accessibility violation. It also checks that the page loaded nothing from
another origin, and keeps screenshots.

usage: dashboard.py CROO_BINARY ARTIFACT_DIR
exit 0 when every check passes, 1 otherwise.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def croo(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return out.stdout


def main():
    binary, artifacts = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(artifacts, exist_ok=True)
    work = tempfile.mkdtemp(prefix="croo-browser-")
    sample, results, keys = (os.path.join(work, n) for n in ("sample", "results", "keys.json"))
    croo(binary, "sample", "--out", sample, "--customers", "400", "--months", "5")
    formula = os.path.join(sample, "retail-croo.toml")
    # Targets beside the formula: the headline shows the latest status.
    with open(os.path.join(sample, "retail-croo.targets.toml"), "w") as f:
        f.write('version = "browser"\n[status]\nrules = ["on_track >= 1.0", "at_risk >= 0.9"]\n'
                'otherwise = "off_track"\n[[targets]]\nfrom = "2026-01"\nvalue = 90\n'
                'baseline = 10\ndirection = "higher"\n')
    run = json.loads(croo(binary, "run", formula, "--from", "2026-07-01", "--to", "2026-10-01",
                          "--out", results, "--format", "json", "--detail"))
    rows = run["results"]
    # The sample's experiment, stored beside the runs: the dashboard's panel.
    experiment = json.loads(croo(binary, "experiment", formula, "--experiment", "chatbot-2026",
                                 "--assignments", os.path.join(sample, "assignments.csv"),
                                 "--from", "2026-08-01", "--to", "2026-10-01", "--out", results,
                                 "--format", "json"))
    key = croo(binary, "keys", "add", "--file", keys, "--name", "exec", "--role", "viewer",
               "--results", results).strip()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([binary, "serve", "--results", results, "--formulas", sample,
                               "--keys", keys, "--bind", f"127.0.0.1:{port}"],
                              stderr=subprocess.DEVNULL)
    failures = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        opts = Options()
        opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1400,1000"):
            opts.add_argument(a)
        service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
        driver = webdriver.Chrome(service=service, options=opts)
        try:
            driver.get(base + "/")
            wait = WebDriverWait(driver, 20)
            wait.until(lambda d: d.find_element(By.ID, "key").is_displayed())
            driver.find_element(By.ID, "key").send_keys(key)
            driver.find_element(By.ID, "enter").click()
            whole = [r for r in rows if r["dimension"] is None]
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trend circle.point")) == len(whole))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#moved tbody tr"))

            def check(what, actual, expected):
                if abs(actual - expected) > 1e-9 * max(1.0, abs(expected)):
                    failures.append(f"{what}: page shows {actual}, store has {expected}")

            # The trend: one point per period, the store's score.
            for c in driver.find_elements(By.CSS_SELECTOR, "#trend circle.point"):
                p = c.get_attribute("data-period")
                r = next(r for r in whole if r["period"] == p)
                check(f"trend {p}", float(c.get_attribute("data-score")), r["score"])
            latest = whole[-1]
            check("headline", float(driver.find_element(By.ID, "latest-score").get_attribute("data-score")),
                  latest["score"])
            shown = driver.find_element(By.ID, "latest-status").text
            if not latest.get("status") or shown.replace(" ", "_") != latest["status"]:
                failures.append(f"status: page shows {shown!r}, croo run says {latest.get('status')!r}")
            # The breakdown by the first dimension (segment) of the latest period.
            groups = {r["value"]: r for r in rows
                      if r["period"] == latest["period"] and r["dimension"] == "segment"}
            bars = driver.find_elements(By.CSS_SELECTOR, "#breakdown rect.bar")
            if len(bars) != len(groups):
                failures.append(f"breakdown: {len(bars)} bars for {len(groups)} segments")
            for b in bars:
                v = b.get_attribute("data-value")
                check(f"bar {v}", float(b.get_attribute("data-score")), groups[v]["score"])
            # The waterfall: each component's contribution, then the score.
            steps = driver.find_elements(By.CSS_SELECTOR, "#waterfall rect[data-component]")
            if len(steps) != len(latest["components"]):
                failures.append(f"waterfall: {len(steps)} steps for {len(latest['components'])} components")
            for s in steps:
                name = s.get_attribute("data-component")
                check(f"waterfall {name}", float(s.get_attribute("data-contribution")),
                      latest["components"][name]["contribution"])
            total = driver.find_element(By.CSS_SELECTOR, "#waterfall rect[data-total]")
            check("waterfall total", float(total.get_attribute("data-total")), latest["score"])
            # What moved: one row per component, changes from the store.
            prev = whole[-2]
            for tr in driver.find_elements(By.CSS_SELECTOR, "#moved tbody tr[data-component]"):
                name = tr.get_attribute("data-component")
                expected = (latest["components"][name]["contribution"]
                            - prev["components"][name]["contribution"])
                check(f"moved {name}", float(tr.get_attribute("data-change")), expected)
            # The status tiles: the whole population's items, as the API says.
            def get(path):
                req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
                return json.load(urllib.request.urlopen(req, timeout=10))

            f = "/v1/formulas/retail-croo"
            status = get(f"{f}/status?period={latest['period']}")
            items = next(g for g in status["groups"] if g["dimension"] is None)["items"]
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tiles .tile"))
            tiles = {t.get_attribute("data-for"): t.get_attribute("data-status")
                     for t in driver.find_elements(By.CSS_SELECTOR, "#tiles .tile")}
            if tiles != {i["for"]: i["status"] for i in items}:
                failures.append(f"tiles: page shows {tiles}, API says {items}")
            # The customers table, lowest score first, then its second page.
            page1 = get(f"{f}/customers?period={latest['period']}&limit=20&sort=score")
            page2 = get(f"{f}/customers?period={latest['period']}&limit=20&sort=score&cursor={page1['next']}")

            def shown_keys():
                return [tr.get_attribute("data-key")
                        for tr in driver.find_elements(By.CSS_SELECTOR, "#customer-table tbody tr")]

            wait.until(lambda d: shown_keys() == [c["key"] for c in page1["customers"]])
            # Once the whole page has loaded (the experiments panel is last).
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#experiment-table tbody tr"))
            nxt = driver.find_element(By.ID, "customer-next")
            wait.until(lambda d: nxt.is_enabled())
            driver.execute_script("arguments[0].click()", nxt)
            try:
                wait.until(lambda d: shown_keys() == [c["key"] for c in page2["customers"]])
            except Exception:
                failures.append(f"customers page 2: page shows {shown_keys()}, the API {[c['key'] for c in page2['customers']]} (page 1 {[c['key'] for c in page1['customers']]})")
            first_key = page2["customers"][0]["key"]
            driver.find_element(By.CSS_SELECTOR, f"#customer-table tr[data-key='{first_key}'] button").click()
            history = get(f"{f}/customers/{first_key}")
            try:
                wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history-table tbody tr"))
                           == len(history["periods"]))
            except Exception:
                failures.append("customer history: rows do not match the API's periods")
            # Open and provisional periods are hollow points.
            for c in driver.find_elements(By.CSS_SELECTOR, "#trend circle.point"):
                hollow = "hollow" in c.get_attribute("class")
                if hollow != (c.get_attribute("data-state") not in ("", "final")):
                    failures.append(f"trend point {c.get_attribute('data-period')}: state marking")
            # The experiments panel: the stored report's overall lift.
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#experiment-table tr[data-group='all']"))
            tr = driver.find_element(By.CSS_SELECTOR, "#experiment-table tr[data-group='all']")
            check("experiment lift", float(tr.get_attribute("data-lift")),
                  experiment["arms"][0]["overall"]["lift"]["absolute"])
            # Labels readable and whole at laptop and tablet widths.
            for width, height in ((1366, 900), (1024, 768), (768, 1024)):
                driver.set_window_size(width, height)
                time.sleep(0.6)
                bad = driver.execute_script("""
                    const out = [];
                    for (const svg of document.querySelectorAll('svg')) {
                      const box = svg.getBoundingClientRect();
                      const vb = svg.viewBox.baseVal;
                      const k = vb && vb.width ? box.width / vb.width : 1;
                      for (const t of svg.querySelectorAll('text')) {
                        const px = parseFloat(getComputedStyle(t).fontSize) * k;
                        const r = t.getBoundingClientRect();
                        if (px < 12) out.push(svg.id + ': "' + t.textContent + '" is ' + px.toFixed(1) + 'px');
                        if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1)
                          out.push(svg.id + ': "' + t.textContent + '" overflows its chart');
                      }
                    }
                    return out;""")
                failures.extend(f"{width}px: {b}" for b in bad)
                driver.save_screenshot(os.path.join(artifacts, f"dashboard-{width}.png"))
            driver.set_window_size(1400, 1000)
            # Accessibility: axe-core finds no serious or critical violation.
            axe = os.environ.get("AXE_JS")
            if not axe or not os.path.isfile(axe):
                failures.append("AXE_JS: axe-core is not vendored (run .ci/api-checks)")
            else:
                driver.execute_script(open(axe).read())
                found = driver.execute_async_script("""
                    const done = arguments[arguments.length - 1];
                    axe.run(document, { resultTypes: ['violations'] })
                      .then(r => done(r.violations.map(v => [v.id, v.impact, v.nodes.length, v.help])))
                      .catch(e => done([['error', 'critical', 0, String(e)]]));""")
                for vid, impact, n, help_text in found:
                    if impact in ("serious", "critical"):
                        failures.append(f"axe {impact}: {vid} ({n} nodes): {help_text}")
            # Nothing from another origin.
            urls = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)")
            foreign = [u for u in urls if not u.startswith(base)]
            if foreign:
                failures.append(f"loaded from elsewhere: {foreign}")
            # The key is kept for the session: a reload needs no key.
            driver.refresh()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#trend circle.point")) == len(whole))
            driver.save_screenshot(os.path.join(artifacts, "dashboard.png"))
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(timeout=10)
    if failures:
        print("dashboard: FAILED")
        for f in failures:
            print("  " + f)
        return 1
    print(f"dashboard: ok ({len(whole)} periods, {len(groups)} segments, "
          f"screenshot in {artifacts}/dashboard.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
