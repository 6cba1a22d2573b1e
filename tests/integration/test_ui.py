"""The admin web UI at /_/ in a real browser (Debian's chromium and
chromium-driver, driven by selenium): log in with the bootstrap password,
read the dashboard, create a user with a key and use that key with boto3,
validate and apply the configuration, log out. Cookie flags, CSRF and the
page's security headers are checked. Screenshots of every page are kept in
$DGP_ARTIFACTS/ui (default tests/artifacts/ui); docs/ui.md shows them."""

import os
import shutil
import textwrap
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import REPO, Server, make_client
from test_session import generated_password

ARTIFACTS = Path(os.environ.get("DGP_ARTIFACTS", REPO / "tests" / "artifacts")) / "ui"


def browser(network_log=False, downloads=None):
    """Headless chromium; with `network_log`, Chrome's performance log
    records every request the page sends (read with get_log); downloads go
    to the folder `downloads`."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    # tests/run installs both; without them this suite fails rather than skips.
    assert chromium and driver, "chromium and chromium-driver are required (apt-get install chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
              "--disable-gpu"):
        opts.add_argument(a)
    if network_log:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    if downloads:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})
    b = webdriver.Chrome(service=Service(driver), options=opts)
    if downloads:
        b.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return b


@pytest.fixture
def ui(tmp_path):
    cfg = tmp_path / "ui.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        storage:
          filesystem: {tmp_path / 'data'}
        advanced:
          auth_delay_after: 100
        """))
    srv = Server(tmp_path / "unused", config=cfg).start()
    srv.cfg = cfg
    b = browser()
    b.implicitly_wait(0)
    yield srv, b
    b.quit()
    srv.stop()


def wait(b, cond, timeout=10):
    return WebDriverWait(b, timeout).until(cond)


def text_of(b, css, timeout=10):
    """The text of the first visible `css` element; an element the page
    replaces meanwhile (it redraws after a change) is looked up again."""
    def visible_text(drv):
        el = EC.visibility_of_element_located((By.CSS_SELECTOR, css))(drv)
        return el.text if el else False

    return WebDriverWait(b, timeout, ignored_exceptions=[StaleElementReferenceException]).until(visible_text)


def shot(b, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    b.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def log_in(srv, b, password):
    b.get(f"{srv.url}/_/")
    field = wait(b, EC.element_to_be_clickable((By.ID, "password")))
    field.clear()
    field.send_keys(password)
    b.find_element(By.ID, "login-button").click()


def test_login_dashboard_cookie_and_logout(ui):
    srv, b = ui
    pw = generated_password(srv)
    log_in(srv, b, "not-the-password")
    assert "Wrong password" in text_of(b, ".msg.error")
    shot(b, "login")
    log_in(srv, b, pw)
    assert text_of(b, "#version")  # the dashboard loaded from /_/api/status
    wait(b, EC.text_to_be_present_in_element((By.ID, "backends"), "healthy"))
    assert "default" in b.find_element(By.ID, "backends").text
    shot(b, "dashboard")

    cookie = b.get_cookie("dgp_session")
    assert cookie and cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/_/"
    assert b.execute_script("return document.cookie") == "", "the session cookie is not readable by script"

    # A state-changing call without the CSRF token is refused, even with the cookie.
    status = b.execute_script(
        "const r = await fetch('/_/api/session', {method: 'DELETE'}); return r.status;")
    assert status == 403
    # A page reload keeps the session (the page asks for its token again).
    b.refresh()
    assert text_of(b, "#version")

    b.find_element(By.ID, "logout").click()
    wait(b, EC.visibility_of_element_located((By.ID, "login-form")))
    status = b.execute_script("const r = await fetch('/_/api/status'); return r.status;")
    assert status == 401, "logout revoked the session"


def test_create_a_user_and_use_its_key_with_boto3(ui):
    srv, b = ui
    log_in(srv, b, generated_password(srv))
    text_of(b, "#version")
    b.find_element(By.ID, "nav-users").click()
    name = wait(b, EC.element_to_be_clickable((By.ID, "new-user-name")))
    name.send_keys("alice")
    Select(b.find_element(By.ID, "new-user-access")).select_by_value("full")
    b.find_element(By.ID, "create-user").click()
    access = text_of(b, "#new-access-key")
    secret = text_of(b, "#new-secret-key")
    wait(b, EC.text_to_be_present_in_element((By.ID, "users"), "alice"))
    assert "Allow * on *" in b.find_element(By.ID, "users").text
    shot(b, "users")

    s3 = make_client(srv.url, access=access, secret=secret)
    s3.create_bucket(Bucket="alice-bucket")
    s3.put_object(Bucket="alice-bucket", Key="hello.txt", Body=b"made with a key from the UI")
    assert s3.get_object(Bucket="alice-bucket", Key="hello.txt")["Body"].read() == b"made with a key from the UI"

    # A second key, shown once; the storage page counts the object.
    b.find_element(By.CSS_SELECTOR, "tr[data-user=alice] button.new-key").click()
    wait(b, EC.text_to_be_present_in_element((By.ID, "new-secret"), "New key for alice"))
    assert text_of(b, "#new-access-key") != access
    b.find_element(By.ID, "nav-storage").click()
    wait(b, EC.text_to_be_present_in_element((By.ID, "buckets"), "alice-bucket"))
    shot(b, "storage")
    b.find_element(By.ID, "nav-jobs").click()
    text_of(b, "h1")
    shot(b, "jobs")


def test_config_page_shows_problems_and_applies(ui):
    srv, b = ui
    log_in(srv, b, generated_password(srv))
    text_of(b, "#version")
    b.find_element(By.ID, "nav-config").click()
    area = wait(b, EC.visibility_of_element_located((By.ID, "config-text")))
    wait(b, lambda d: "filesystem" in area.get_attribute("value"))
    original = area.get_attribute("value")
    # A bad value: the problem is listed with its field, and nothing is written.
    assert "  auth_delay_after: 100\n" in original
    bad = original.replace("  auth_delay_after: 100\n", "  auth_delay_after: 100\n  max_delta_ratio: 9\n")
    b.execute_script("arguments[0].value = arguments[1]", area, bad)
    b.find_element(By.ID, "config-validate").click()
    assert "advanced.max_delta_ratio" in text_of(b, ".problems")
    shot(b, "config")
    assert "max_delta_ratio" not in srv.cfg.read_text()
    # A good change applies live.
    good = original.replace("  auth_delay_after: 100\n",
                            "  auth_delay_after: 100\n  metrics_allow_from: [127.0.0.1/32]\n")
    b.execute_script("arguments[0].value = arguments[1]", area, good)
    b.find_element(By.ID, "config-apply").click()
    wait(b, EC.text_to_be_present_in_element((By.ID, "config-result"), "Applied"))
    assert "metrics_allow_from" in srv.cfg.read_text()
    assert requests.get(f"{srv.url}/_/metrics", timeout=10).status_code == 200


def test_the_page_is_public_but_locked_down(ui):
    srv, _ = ui
    r = requests.get(f"{srv.url}/_/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert requests.get(f"{srv.url}/_/ui/app.js", timeout=10).headers["content-type"].startswith("text/javascript")
    assert requests.get(f"{srv.url}/_/ui/nothing.js", timeout=10).status_code == 404
    r = requests.get(f"{srv.url}/_", timeout=10, allow_redirects=False)
    assert r.status_code == 308 and r.headers["location"] == "/_/"
    # The page holds no data: everything behind it needs the session.
    assert requests.get(f"{srv.url}/_/api/iam/users", timeout=10).status_code == 401


def test_declarative_iam_is_read_only_in_the_ui(tmp_path):
    cfg = tmp_path / "decl.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        access:
          iam_mode: declarative
          iam_users:
            - name: bob
              access_key_id: BOBKEY0000000001
              secret_access_key: bob-secret-0000000000000000
              permissions: [{{effect: Allow, actions: [read], resources: ["*"]}}]
        storage:
          filesystem: {tmp_path / 'data'}
        """))
    srv = Server(tmp_path / "unused", config=cfg).start()
    b = browser()
    try:
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-users").click()
        assert "read-only" in text_of(b, "#iam-declarative")
        wait(b, EC.text_to_be_present_in_element((By.ID, "users"), "bob"))
        assert not b.find_elements(By.ID, "new-user-form")
        assert not b.find_elements(By.CSS_SELECTOR, "button.delete-user")
    finally:
        b.quit()
        srv.stop()
