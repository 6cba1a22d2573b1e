"""The admin UI's audit log viewer (recent records, filtered by user,
bucket and status) and the embedded documentation (docs/*.md rendered and
searchable), in a real browser; their API refusals."""

import time

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

import requests

from conftest import Server, raw_request
from test_session import generated_password
from test_ui import browser, log_in, shot, text_of, wait
from test_ui_encryption import config


def test_audit_viewer_filters_and_docs_search(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    b = browser()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="audited")
        s3.put_object(Bucket="audited", Key="a.txt", Body=b"x")
        # Two refusals: anonymous reads of a private bucket.
        for _ in range(2):
            assert requests.get(f"{srv.url}/audited/a.txt", timeout=10).status_code == 403
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-audit").click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "audit"), "PutObject"))
        Select(b.find_element(By.ID, "audit-status")).select_by_value("error")
        b.find_element(By.ID, "audit-bucket").send_keys("audited")
        b.find_element(By.ID, "audit-apply").click()
        wait(b, lambda d: "status=error" in d.current_url
             and len(d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")) == 2)
        rows = b.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
        assert {r.get_attribute("data-status") for r in rows} == {"403"}
        assert all(r.find_element(By.CSS_SELECTOR, ".user").text == "anonymous" for r in rows)
        shot(b, "audit")
        b.get(f"{srv.url}/_/#/audit?user=admin&bucket=audited")
        wait(b, lambda d: d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
             and all(r.text.split()[2] == "admin" for r in d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")))
        assert "PutObject" in b.find_element(By.ID, "audit").text

        b.find_element(By.ID, "nav-docs").click()
        box = wait(b, EC.element_to_be_clickable((By.ID, "docs-search")))
        box.send_keys("bootstrap password")
        b.find_element(By.ID, "docs-search-button").click()
        wait(b, EC.presence_of_element_located((By.CSS_SELECTOR, "li[data-doc=iam]")))
        names = {li.get_attribute("data-doc") for li in b.find_elements(By.CSS_SELECTOR, "#docs-list li")}
        assert "iam" in names and "fuse" not in names
        assert "bootstrap" in b.find_element(By.CSS_SELECTOR, "li[data-doc=iam] .snippet").text.lower()
        b.find_element(By.CSS_SELECTOR, "li[data-doc=iam] a").click()
        assert text_of(b, "#doc h1")
        assert b.find_elements(By.CSS_SELECTOR, "#doc table"), "Markdown tables render"
        shot(b, "docs")
    finally:
        b.quit()
        srv.stop()


def test_audit_and_docs_api(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    try:
        assert raw_request(f"{srv.url}/_/api/audit")[0] == 401
        assert raw_request(f"{srv.url}/_/api/docs")[0] == 401
        assert raw_request(f"{srv.url}/_/api/audit?status=bogus", sign=True)[0] == 400
        assert raw_request(f"{srv.url}/_/api/audit?limit=0", sign=True)[0] == 400
        assert raw_request(f"{srv.url}/_/api/docs/nope", sign=True)[0] == 404
        import json
        status, _, body = raw_request(f"{srv.url}/_/api/docs/encryption", sign=True)
        doc = json.loads(body)
        assert status == 200 and doc["html"].startswith("<h1>") and "<script" not in doc["html"]
        time.sleep(0.2)
        status, _, body = raw_request(f"{srv.url}/_/api/audit?limit=1&user=admin", sign=True)
        recs = json.loads(body)["records"]
        assert status == 200 and len(recs) == 1 and recs[0]["user"] == "admin"
        assert recs[0]["key"].startswith("/_/api/"), recs
        # Filter by operation (case does not matter) and bucket together.
        s3 = srv.client()
        s3.create_bucket(Bucket="ops")
        s3.put_object(Bucket="ops", Key="a", Body=b"x")
        s3.get_object(Bucket="ops", Key="a")["Body"].read()
        deadline, recs = time.time() + 5, []
        while time.time() < deadline and not recs:
            recs = json.loads(raw_request(f"{srv.url}/_/api/audit?operation=putobject&bucket=ops", sign=True)[2])["records"]
            time.sleep(0.1)
        assert recs and all(r["operation"] == "PutObject" and r["bucket"] == "ops" for r in recs), recs
        recs = json.loads(raw_request(f"{srv.url}/_/api/audit?operation=GetObject&bucket=ops", sign=True)[2])["records"]
        assert [r["key"] for r in recs] == ["a"], recs
        recs = json.loads(raw_request(f"{srv.url}/_/api/audit?operation=DeleteObject", sign=True)[2])["records"]
        assert recs == []
    finally:
        srv.stop()


def test_dashboard_history_counts_requests_and_errors(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    b = browser()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="busy")
        for i in range(20):
            s3.put_object(Bucket="busy", Key=f"k{i}", Body=b"x")
        for _ in range(5):
            assert requests.get(f"{srv.url}/busy/missing", timeout=10).status_code == 403
        import json
        deadline, hist = time.time() + 45, []
        while time.time() < deadline:
            hist = json.loads(raw_request(f"{srv.url}/_/api/status", sign=True)[2])["history"]
            # The load may straddle two samples: wait until they hold it all.
            if sum(h["requests_per_sec"] * 10 for h in hist) >= 26:
                break
            time.sleep(1)
        busy = [h for h in hist if h["requests_per_sec"] > 0]
        assert busy, hist
        total = sum(h["requests_per_sec"] * 10 for h in busy)
        assert total >= 26, busy  # 1 create + 20 puts + 5 refusals (+ the status calls)
        assert any(h["client_error_ratio"] > 0 for h in busy) and all(h["server_error_ratio"] == 0 for h in busy)
        log_in(srv, b, generated_password(srv))
        wait(b, EC.presence_of_element_located((By.CSS_SELECTOR, "#spark-requests_per_sec polyline")))
        shot(b, "dashboard")
    finally:
        b.quit()
        srv.stop()
