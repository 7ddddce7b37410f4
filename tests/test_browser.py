"""A real browser: JupyterLab headless + Chromium (selenium) runs the explorer notebooks,
moves a control and checks that the plotly figure changed.

Installs Debian's ``chromium`` and ``chromium-driver`` with apt-get when they are missing and
the test runs as root (CI); otherwise it is skipped with a message. The notebooks run with
fast parameters (tiny preset). Screenshots go to ``artifacts/browser/`` (gitignored); with
``MMLAB_UPDATE_DOCS_IMG=1`` the notebooks run with their committed CPU defaults instead and
the explorers' pictures are copied into ``docs/img/`` for the README.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts" / "browser"
DOCS_IMG = ROOT / "docs" / "img"
FAST = {
    "preset": "tiny", "epochs": 2, "n_samples": 120,
    "admc_overrides": {"itfn.train.epochs": 2, "adn.train.epochs": 5, "mf.train.epochs": 2,
                       "mf.scenarios": "full", "mmer": False},
}
BROWSER_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,1150"]
DOCS_MODE = bool(os.environ.get("MMLAB_UPDATE_DOCS_IMG"))
RUN_TIMEOUT = 600 if DOCS_MODE else 300  # seconds for "run all" to show the explorer
UPDATE_TIMEOUT = 60  # seconds for a control change to reach the figure


# ------------------------------------------------------------------------------ setup helpers
def _chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing Debian's packages when root."""
    def find() -> tuple[str | None, str | None]:
        return (shutil.which("chromium") or shutil.which("chromium-browser"),
                shutil.which("chromedriver") or ("/usr/lib/chromium/chromedriver"
                                                  if Path("/usr/lib/chromium/chromedriver").exists() else None))

    browser, driver = find()
    if browser and driver:
        return browser, driver
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium / chromium-driver are not installed and this user cannot apt-get install them "
                    "(run as root, or: sudo apt-get install -y chromium chromium-driver)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if out.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    browser, driver = find()
    if not (browser and driver):
        pytest.fail("apt-get installed chromium and chromium-driver but they are not on PATH")
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(root: Path, out_dir: Path) -> None:
    """Copies of the explorer notebooks with fast parameters injected (papermill prepare_only)."""
    import papermill as pm

    from mmlab.workspace import declared_parameters

    fast = {} if DOCS_MODE else FAST  # docs pictures: the committed CPU defaults
    for name in ("05_missingness_explorer", "06_diffusion_step_explorer"):
        src = ROOT / "notebooks" / f"{name}.ipynb"
        params = {k: v for k, v in fast.items() if k in declared_parameters(src)}
        params.update(interactive=True, out_dir=str(out_dir))
        pm.execute_notebook(str(src), str(root / src.name), parameters=params, prepare_only=True,
                            kernel_name="python3", progress_bar=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a token, root_dir = the prepared copies."""
    _chromium()
    base = tmp_path_factory.mktemp("lab")
    root, out_dir = base / "root", base / "out"
    root.mkdir()
    _prepare(root, out_dir)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(base / "jupyterlab.log", "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"JupyterLab did not start: {(base / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "log": base / "jupyterlab.log"}
    finally:
        try:  # shuts the kernels down too
            req = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            pass
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def driver(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = Path(lab["log"]).parent / "chrome-profile"
    for flag in BROWSER_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


# ------------------------------------------------------------------------------ page helpers
def _wait(what: str, fn, timeout: float, driver=None, lab=None):
    """Poll ``fn`` until it returns something truthy; fail with a screenshot and the server log."""
    deadline = time.time() + timeout
    last_error = None
    while time.time() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - the DOM changes under us
            last_error = err
        time.sleep(0.5)
    if driver is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "timeout.png"))
    tail = Path(lab["log"]).read_text()[-2000:] if lab else ""
    errors = _errors(driver) if driver is not None else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})\n{errors}\n{tail}")


def _errors(driver) -> str:
    from selenium.webdriver.common.by import By

    texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".jp-RenderedText[data-mime-type*='error'], "
                                                                    ".jp-OutputArea-output[data-mime-type*='error']")]
    return "\n".join(t for t in texts if t)[-3000:]


ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def _started(driver) -> bool:
    """Some cell of the visible notebook is running or has run ("[*]:" or "[n]:")."""
    return bool(driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' .jp-InputPrompt')]"
        ".some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent));", ACTIVE))


def _open_and_run_all(driver, lab, name: str) -> None:
    from selenium.webdriver.common.by import By

    # a fresh workspace per notebook: only this notebook open, nothing restored from before
    driver.get(f"{lab['url']}/lab/workspaces/{name[:2]}/tree/{name}.ipynb?reset&token={lab['token']}")
    _wait("the notebook to open", lambda: driver.find_elements(By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell"), 90, driver, lab)
    _wait("an idle kernel", lambda: "Idle" in driver.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text,
          90, driver, lab)
    for attempt in range(2):
        driver.find_element(By.CSS_SELECTOR, f"{ACTIVE} .jp-Cell .jp-InputPrompt").click()  # focus this notebook
        # Run > Run All Cells (the JupyterLab command runmenu:run-all)
        _wait("the Run menu", lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel")
                                       if e.text.strip() == "Run"], 30, driver, lab)[0].click()
        _wait("Run All Cells", lambda: driver.find_elements(By.CSS_SELECTOR, "li[data-command='runmenu:run-all']"),
              15, driver, lab)[0].click()
        deadline = time.time() + 45
        while time.time() < deadline and not _started(driver):
            time.sleep(0.5)
        if _started(driver):
            return
    _wait("the cells to start running", lambda: _started(driver), 1, driver, lab)


def _explorer(driver, label: str):
    """The widget box whose controls include a description ``label``."""
    return driver.execute_script(
        "for (const box of document.querySelectorAll('.widget-vbox')) {"
        "  const labels = [...box.querySelectorAll('.widget-label')].map(e => e.textContent.trim());"
        "  if (labels.includes(arguments[0]) && box.querySelector('.js-plotly-plot')) return box; }"
        "return null;", label)


def _figure_state(driver, box) -> dict:
    """Title text and the first coordinates of every trace of the explorer's plotly figure."""
    return json.loads(driver.execute_script(
        "const gd = arguments[0].querySelector('.js-plotly-plot');"
        "const t = gd.querySelector('.gtitle');"
        "return JSON.stringify({title: t ? t.textContent : '', n: gd.data.length,"
        "  xs: gd.data.map(d => d.x ? Array.from(d.x).slice(0, 8) : (d.z ? [JSON.stringify(d.z).slice(0, 4000)] : null)),"
        "  ys: gd.data.map(d => d.y ? Array.from(d.y).slice(0, 8) : null),"
        "  paths: [...gd.querySelectorAll('path.point')].map(p => p.getAttribute('transform')).join('|')});",
        box))


def _screenshot(driver, box, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", box)
    time.sleep(1.0)  # let plotly finish its transition
    path = ARTIFACTS / f"{name}.png"
    box.screenshot(str(path))
    driver.save_screenshot(str(ARTIFACTS / f"{name}-page.png"))
    if DOCS_MODE:
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMG / f"{name}.png")
    return path


# ------------------------------------------------------------------------------ tests
def test_missingness_explorer_in_jupyterlab(driver, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _open_and_run_all(driver, lab, "05_missingness_explorer")
    box = _wait("the missingness explorer", lambda: _explorer(driver, "protocol"), RUN_TIMEOUT, driver, lab)
    _wait("the figure title", lambda: _figure_state(driver, box)["title"], 30, driver, lab)
    before = _figure_state(driver, box)
    select = next(s for s in box.find_elements(By.CSS_SELECTOR, "select")
                  if "{VT}" in [o.text for o in Select(s).options])
    Select(select).select_by_visible_text("{T}")
    after = _wait("the figure to follow the pattern", lambda: (lambda s: s if "{T}" in s["title"] else None)(
        _figure_state(driver, box)), UPDATE_TIMEOUT, driver, lab)
    assert after["title"] != before["title"]
    assert after["xs"][0] != before["xs"][0] and after["ys"] != before["ys"]  # the masks and the recall bars
    _screenshot(driver, box, "05_missingness_explorer")


def test_diffusion_step_explorer_slider_moves_the_figure(driver, lab):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _open_and_run_all(driver, lab, "06_diffusion_step_explorer")
    box = _wait("the diffusion-step explorer", lambda: _explorer(driver, "start step n"), RUN_TIMEOUT, driver, lab)
    _wait("the figure title", lambda: "n=50" in _figure_state(driver, box)["title"], 30, driver, lab)
    before = _figure_state(driver, box)
    slider = next(s for s in box.find_elements(By.CSS_SELECTOR, ".widget-slider")
                  if s.find_element(By.CSS_SELECTOR, ".widget-label").text.strip() == "start step n")
    readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
    readout.click()
    readout.send_keys(Keys.CONTROL, "a")
    readout.send_keys("90", Keys.ENTER)
    after = _wait("the figure to follow the slider", lambda: (lambda s: s if "n=90" in s["title"] else None)(
        _figure_state(driver, box)), UPDATE_TIMEOUT, driver, lab)
    assert after["n"] == before["n"]
    assert after["xs"] != before["xs"] and after["paths"] != before["paths"]
    assert readout.text.strip() == "90"
    path = _screenshot(driver, box, "06_diffusion_step_explorer")
    assert path.stat().st_size > 20_000
