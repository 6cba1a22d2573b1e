"""The Backends page's bucket routing form: a route added in the browser is
applied live (a merge patch on storage, written to the config file), S3
requests follow it at once, an invalid alias is refused with the problem
shown under its row and nothing changes, and Remove takes the route away."""

import json

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
