"""The Backends page's bucket routing form: a route added in the browser is
applied live (a merge patch on storage, written to the config file), S3
requests follow it at once, an invalid alias is refused with the problem
shown under its row and nothing changes, and Remove takes the route away."""

import json
import time

from botocore.exceptions import ClientError

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from conftest import raw_request
from test_session import generated_password
from test_ui import log_in, shot, text_of, ui, wait  # noqa: F401 (ui is a fixture)


def routes(srv):
    status, _, body = raw_request(f"{srv.url}/_/api/config?format=json", sign=True)
    assert status == 200, body
    return json.loads(body).get("storage", {}).get("buckets", {})


def test_bucket_routes_from_the_backends_page(ui):
    srv, b = ui
    log_in(srv, b, generated_password(srv))
    text_of(b, "#version")
    b.find_element(By.ID, "nav-backends").click()
    wait(b, EC.element_to_be_clickable((By.ID, "route-name-new"))).send_keys("routed")
    Select(b.find_element(By.ID, "route-backend-new")).select_by_value("default")
    b.find_element(By.ID, "route-alias-new").send_keys("real-one")
    b.find_element(By.ID, "route-public-new").send_keys("pub/")
    b.find_element(By.ID, "route-save-new").click()
    assert "Route for routed applied" in text_of(b, "#route-saved")
    # (the default backend is a default: the canonical document leaves it out)
    assert routes(srv) == {"routed": {"alias": "real-one", "public_prefixes": ["pub/"]}}
    assert "real-one" in srv.cfg.read_text(), "written to the config file"
    shot(b, "backends-routes")

    # S3 follows the route at once: the bucket lives under its alias, and
    # its public prefix reads without credentials.
    s3 = srv.client()
    s3.create_bucket(Bucket="routed")
    s3.put_object(Bucket="routed", Key="pub/a.txt", Body=b"routed body")
    s3.put_object(Bucket="routed", Key="private.txt", Body=b"secret")
    assert (srv.cfg.parent / "data" / "real-one").is_dir()
    assert raw_request(f"{srv.url}/routed/pub/a.txt")[0] == 200
    assert raw_request(f"{srv.url}/routed/private.txt")[0] == 403

    # An invalid alias: the problem shows under the row, nothing changes.
    alias = wait(b, EC.element_to_be_clickable((By.ID, "route-alias-routed")))
    alias.clear()
    alias.send_keys("Bad_Alias")
    b.find_element(By.ID, "route-save-routed").click()
    problem = text_of(b, "#route-problems-routed li")
    assert "storage.buckets.routed.alias" in problem, problem
    assert routes(srv)["routed"]["alias"] == "real-one"

    # Compression off, then remove the route.
    b.find_element(By.ID, "route-alias-routed").clear()
    b.find_element(By.ID, "route-alias-routed").send_keys("real-one")
    b.find_element(By.ID, "route-compression-routed").click()
    b.find_element(By.ID, "route-save-routed").click()
    text_of(b, "#route-saved")
    assert routes(srv)["routed"]["compression"] is False
    wait(b, EC.element_to_be_clickable((By.ID, "route-remove-routed"))).click()
    assert "removed" in text_of(b, "#route-saved")
    assert routes(srv) == {}


def test_backends_added_made_default_and_removed_from_the_backends_page(ui, tmp_path):
    srv, b = ui
    log_in(srv, b, generated_password(srv))
    text_of(b, "#version")
    b.find_element(By.ID, "nav-backends").click()
    assert not b.find_elements(By.ID, "backend-remove-default"), "the only backend has no Remove"

    # An S3 upstream without an endpoint: the problem shows, nothing changes.
    wait(b, EC.element_to_be_clickable((By.ID, "backend-name-new"))).send_keys("up")
    Select(b.find_element(By.ID, "backend-type-new")).select_by_value("s3")
    b.find_element(By.ID, "backend-add").click()
    problem = text_of(b, "#backend-problems-new li")
    assert "storage.backends[1].endpoint" in problem, problem
    assert "backends:" not in srv.cfg.read_text()

    # A second directory: added live, the singleton becomes `default`.
    b.find_element(By.ID, "backend-name-new").clear()
    b.find_element(By.ID, "backend-name-new").send_keys("nas2")
    Select(b.find_element(By.ID, "backend-type-new")).select_by_value("filesystem")
    b.find_element(By.ID, "backend-path-new").send_keys(str(tmp_path / "two"))
    b.find_element(By.ID, "backend-add").click()
    assert "Backend nas2 added" in text_of(b, "#backend-saved")
    assert wait(b, EC.visibility_of_element_located((By.ID, "backend-nas2")))
    text = srv.cfg.read_text()
    assert "name: nas2" in text and "name: default" in text, text

    # A route to it with the delta settings of the form.
    wait(b, EC.element_to_be_clickable((By.ID, "route-name-new"))).send_keys("fws")
    Select(b.find_element(By.ID, "route-backend-new")).select_by_value("nas2")
    b.find_element(By.ID, "route-ratio-new").send_keys("0.5")
    b.find_element(By.ID, "route-delta-types-new").send_keys(".fw, .img")
    b.find_element(By.ID, "route-passthrough-types-new").send_keys(".iso")
    b.find_element(By.ID, "route-save-new").click()
    assert "Route for fws applied" in text_of(b, "#route-saved")
    assert routes(srv) == {"fws": {"backend": "nas2", "max_delta_ratio": 0.5, "delta_types": [".fw", ".img"],
                                  "passthrough_types": [".iso"]}}
    assert b.find_element(By.ID, "route-delta-types-fws").get_attribute("value") == ".fw, .img"
    s3 = srv.client()
    s3.create_bucket(Bucket="fws")
    s3.put_object(Bucket="fws", Key="v1.fw", Body=b"x" * 1000)
    assert (tmp_path / "two" / "fws").is_dir()
    # A bad ratio is refused under its row.
    ratio = b.find_element(By.ID, "route-ratio-fws")
    ratio.clear()
    ratio.send_keys("2")
    b.find_element(By.ID, "route-save-fws").click()
    assert "storage.buckets.fws.max_delta_ratio" in text_of(b, "#route-problems-fws li")
    shot(b, "backends-add")

    # Make nas2 the default: then `default` may go, nas2 may not.
    b.find_element(By.ID, "backend-default-nas2").click()
    assert "now go to nas2" in text_of(b, "#backend-saved")
    assert not b.find_elements(By.ID, "backend-remove-nas2")
    b.find_element(By.ID, "backend-default-default").click()
    text_of(b, "#backend-saved")

    # nas2 holds a bucket: Remove asks again; forced, the route still holds it.
    wait(b, EC.element_to_be_clickable((By.ID, "backend-remove-nas2"))).click()
    assert "holds buckets (fws)" in text_of(b, "#backend-problems-nas2")
    b.find_element(By.ID, "backend-force-remove-nas2").click()
    assert "storage.buckets.fws.backend" in text_of(b, "#backend-problems-nas2 li")
    b.find_element(By.ID, "route-remove-fws").click()
    text_of(b, "#route-saved")
    wait(b, EC.element_to_be_clickable((By.ID, "backend-remove-nas2"))).click()
    wait(b, EC.element_to_be_clickable((By.ID, "backend-force-remove-nas2"))).click()
    assert "Backend nas2 removed" in text_of(b, "#backend-saved")
    assert "nas2" not in srv.cfg.read_text()
    assert (tmp_path / "two" / "fws" / "v1.fw").exists(), "its data stays"


def test_moving_a_bucket_from_the_jobs_page(tmp_path):
    """Start a migrate job in the browser; the page follows it to done, the
    route switches and boto3 reads the same bytes from the other backend."""
    from test_migrate import serve
    from test_ui import browser

    srv = serve(tmp_path)
    b = browser()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="photos")
        bodies = {f"p{i}.jpg": bytes([i]) * (100_000 + i) for i in range(20)}
        for k, v in bodies.items():
            s3.put_object(Bucket="photos", Key=k, Body=v)
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-jobs").click()
        Select(wait(b, EC.element_to_be_clickable((By.ID, "migrate-bucket")))).select_by_value("photos")
        Select(b.find_element(By.ID, "migrate-to")).select_by_value("vault")
        b.find_element(By.ID, "migrate-start").click()
        row = "tr[data-job='migrate-photos']"
        wait(b, EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"{row} .state"), "done"), timeout=60)
        assert "20 objects" in b.find_element(By.CSS_SELECTOR, row).text
        shot(b, "jobs-migrate")
        # The route switched: the bucket now lives on vault, encrypted there.
        for k, v in bodies.items():
            assert s3.get_object(Bucket="photos", Key=k)["Body"].read() == v
        assert (tmp_path / "vault" / "photos" / "p3.jpg").read_bytes().startswith(b"DGE1")
        deadline = time.time() + 20
        while True:  # writes resume once the job has switched the route
            try:
                s3.put_object(Bucket="photos", Key="after.jpg", Body=b"after")
                break
            except ClientError as e:
                assert e.response["Error"]["Code"] == "SlowDown" and time.time() < deadline, e.response
                time.sleep(0.2)
        assert (tmp_path / "vault" / "photos" / "after.jpg").exists()
        assert not (tmp_path / "local" / "photos" / "after.jpg").exists()
        # Refusals say why: the bucket is there already; no such bucket.
        Select(b.find_element(By.ID, "migrate-bucket")).select_by_value("photos")
        Select(b.find_element(By.ID, "migrate-to")).select_by_value("vault")
        b.find_element(By.ID, "migrate-start").click()
        assert text_of(b, "#migrate-msg") == "bucket photos is already on backend 'vault'"
        b.execute_script("document.getElementById('migrate-bucket').append(new Option('nope', 'nope'))")
        Select(b.find_element(By.ID, "migrate-bucket")).select_by_value("nope")
        b.find_element(By.ID, "migrate-start").click()
        assert "no such bucket" in text_of(b, "#migrate-msg")
    finally:
        b.quit()
        srv.stop()
