"""The admin UI's file browser in a real browser: buckets and prefixes, a
20 MiB upload that goes up in parts with a progress bar, downloaded back
byte-identical through the browser's own download, a text preview, and bulk
delete. The file endpoints' refusals are checked through the API."""

import hashlib
import json
import os
import time
import zipfile

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from conftest import Server, raw_request
from test_session import generated_password
from test_ui import browser, log_in, shot, text_of, wait
from test_ui_encryption import config


def wait_download(folder, name, size, timeout=60):
    path = folder / name
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and path.stat().st_size == size and not list(folder.glob("*.crdownload")):
            return path
        time.sleep(0.2)
    raise AssertionError(f"{name} was not downloaded: {list(folder.iterdir())}")


def test_upload_20_mib_in_parts_download_preview_and_delete(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    s3 = srv.client()
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="notes/readme.txt", Body=b"Hello from the file browser.\nLine two.\n",
                  ContentType="text/plain")
    s3.put_object(Bucket="media", Key="notes/old.txt", Body=b"to be deleted")
    s3.put_object(Bucket="media", Key="notes/older.txt", Body=b"to be deleted too")
    big = tmp_path / "big.bin"
    payload = os.urandom(20 * 1024 * 1024)
    big.write_bytes(payload)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    b = browser(downloads=downloads)
    try:
        log_in(srv, b, generated_password(srv))
        text_of(b, "#version")
        b.find_element(By.ID, "nav-files").click()
        wait(b, EC.element_to_be_clickable((By.LINK_TEXT, "media/"))).click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "files"), "notes/"))

        b.find_element(By.ID, "upload-file").send_keys(str(big))
        b.find_element(By.ID, "upload-button").click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "upload-status"), "done"), 120)
        assert "20.0 MiB" in b.find_element(By.ID, "upload-status").text
        wait(b, EC.text_to_be_present_in_element((By.ID, "files"), "big.bin"))
        shot(b, "files")
        head = s3.head_object(Bucket="media", Key="big.bin")
        assert head["ContentLength"] == len(payload)
        assert head["ETag"].endswith('-3"'), "three 8 MiB parts: " + head["ETag"]
        got = s3.get_object(Bucket="media", Key="big.bin")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()

        b.find_element(By.CSS_SELECTOR, "tr[data-key='big.bin'] a.download").click()
        path = wait_download(downloads, "big.bin", len(payload))
        assert path.read_bytes() == payload, "downloaded byte-identical"

        b.find_element(By.LINK_TEXT, "notes/").click()
        wait(b, EC.text_to_be_present_in_element((By.ID, "crumbs"), "notes"))
        b.find_element(By.CSS_SELECTOR, "tr[data-key='notes/readme.txt'] button.preview").click()
        assert text_of(b, "#preview pre") == "Hello from the file browser.\nLine two."

        for k in ("notes/old.txt", "notes/older.txt"):
            b.find_element(By.CSS_SELECTOR, f"tr[data-key='{k}'] input.pick").click()
        b.find_element(By.ID, "delete-selected").click()
        wait(b, EC.alert_is_present()).accept()
        wait(b, lambda d: not d.find_elements(By.CSS_SELECTOR, "tr[data-key='notes/old.txt']"))
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="media")["Contents"]]
        assert keys == ["big.bin", "notes/readme.txt"]

        # The whole bucket as a ZIP, through the browser's download.
        b.find_element(By.LINK_TEXT, "media").click()
        wait(b, EC.element_to_be_clickable((By.ID, "zip-download"))).click()
        end = time.time() + 60
        while time.time() < end and (not (downloads / "media.zip").exists() or list(downloads.glob("*.crdownload"))):
            time.sleep(0.2)
        with zipfile.ZipFile(downloads / "media.zip") as z:
            assert sorted(z.namelist()) == ["big.bin", "notes/readme.txt"]
            assert z.read("big.bin") == payload and z.testzip() is None
            assert z.read("notes/readme.txt") == b"Hello from the file browser.\nLine two.\n"
    finally:
        b.quit()
        srv.stop()


def files_api(srv, path, method="GET", body=b""):
    status, headers, out = raw_request(f"{srv.url}/_/api/files{path}", method=method, sign=True, body=body)
    return status, headers, out


def test_file_endpoints_answer_errors_and_guard_previews(tmp_path):
    srv = Server(tmp_path / "unused", config=config(tmp_path)).start()
    try:
        s3 = srv.client()
        s3.create_bucket(Bucket="web")
        s3.put_object(Bucket="web", Key="page.html", Body=b"<script>alert(1)</script>", ContentType="text/html")
        assert raw_request(f"{srv.url}/_/api/files?bucket=web")[0] == 401, "unsigned"
        assert files_api(srv, "?bucket=nope")[0] == 404
        assert files_api(srv, "/object?bucket=web&key=missing")[0] == 404
        assert files_api(srv, "/object?bucket=web")[0] == 400
        # A preview never renders HTML from a bucket as a page of this origin.
        status, headers, out = files_api(srv, "/object?bucket=web&key=page.html&inline=1")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert "sandbox" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
        status, headers, _ = files_api(srv, "/object?bucket=web&key=page.html")
        assert headers["content-disposition"].startswith('attachment; filename="page.html"')

        status, _, out = files_api(srv, "/uploads?bucket=web&key=parts.bin", "POST")
        upload = json.loads(out)["upload_id"]
        assert files_api(srv, f"/uploads/{upload}?bucket=web&key=parts.bin&part=0", "PUT", b"x")[0] == 400
        assert files_api(srv, f"/uploads/{upload}?bucket=web&key=other&part=1", "PUT", b"x")[0] == 404
        assert files_api(srv, "/uploads/nosuchupload?bucket=web&key=parts.bin&part=1", "PUT", b"x")[0] == 404
        status, _, out = files_api(srv, f"/uploads/{upload}?bucket=web&key=parts.bin&part=1", "PUT", b"only part")
        etag = json.loads(out)["etag"]
        done = json.dumps({"parts": [{"number": 1, "etag": etag}]}).encode()
        status, _, out = files_api(srv, f"/uploads/{upload}/complete?bucket=web&key=parts.bin", "POST", done)
        assert status == 200, out
        assert s3.get_object(Bucket="web", Key="parts.bin")["Body"].read() == b"only part"
        assert files_api(srv, "/object?bucket=web&key=parts.bin", "DELETE")[0] == 204
        assert files_api(srv, "/object?bucket=web&key=parts.bin")[0] == 404
        assert files_api(srv, "/zip?bucket=nope")[0] == 404
        status, headers, out = files_api(srv, "/zip?bucket=web&prefix=pa")
        assert status == 200 and headers["content-type"] == "application/zip"
        assert headers["content-disposition"] == 'attachment; filename="web-pa.zip"'
        import io
        assert zipfile.ZipFile(io.BytesIO(out)).namelist() == ["page.html"], "names start at the prefix's folder"
    finally:
        srv.stop()
