//! The repository benchmark: starts the release server on 127.0.0.1 with a
//! data directory on this disk, and measures in one run
//!  - the disk itself (write + fsync, read) with a 1 GiB file,
//!  - PUT and GET of a 1 GiB object through the server,
//!  - 4 KiB PUT and GET operations per second at 1 and 16 concurrent clients,
//!  - the server's peak RSS across a large (default 5 GiB) PUT and GET.
//!
//! Run: `cargo build --release && cargo bench --bench s3bench`
//!  - encryption: AES-GCM per core, encrypted vs plaintext PUT/GET, a 1 MiB
//!    range at the end of a large encrypted object, rotate-kek over many
//!    objects, storage overhead.
//!
//! Options (after `--`): `--big-mib N` (1024), `--huge-mib N` (5120),
//! `--range-mib N` (4096), `--rotate-objects N` (100000), `--secs N` (5), `--dir D`.
//! Results are recorded in docs/benchmarks.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deltaglider_proxy::s3::auth::sigv4::{CanonicalRequestInput, compute_signature};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const AK: &str = "benchadmin";
const SK: &str = "bench-secret-key-0123456789";
const MIB: u64 = 1024 * 1024;

type Body = BoxBody<Bytes, std::io::Error>;

struct Opts {
    big_mib: u64,
    huge_mib: u64,
    range_mib: u64,
    rotate_objects: u64,
    secs: u64,
    dir: PathBuf,
}

fn opts() -> Opts {
    let mut o = Opts {
        big_mib: 1024,
        huge_mib: 5120,
        range_mib: 4096,
        rotate_objects: 100_000,
        secs: 5,
        dir: PathBuf::from("target/bench-data"),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--big-mib" => o.big_mib = v.parse().expect("--big-mib N"),
            "--huge-mib" => o.huge_mib = v.parse().expect("--huge-mib N"),
            "--range-mib" => o.range_mib = v.parse().expect("--range-mib N"),
            "--rotate-objects" => o.rotate_objects = v.parse().expect("--rotate-objects N"),
            "--secs" => o.secs = v.parse().expect("--secs N"),
            "--dir" => o.dir = PathBuf::from(v),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(bin: &Path, data: &Path) -> Server {
        Self::start_with(bin, data, None, &[])
    }

    /// With `config`: a YAML config file (its storage section wins over --data-dir).
    fn start_with(bin: &Path, data: &Path, config: Option<&Path>, envs: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(bin);
        cmd.envs(envs.iter().copied());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .env("DGP_ACCESS_KEY_ID", AK)
            .env("DGP_SECRET_ACCESS_KEY", SK)
            .env("DGP_LOG_LEVEL", "deltaglider_proxy=info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server (did you run `cargo build --release`?)");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines.next().expect("server exited").unwrap();
            if let Some(i) = line.find("addr=") {
                break line[i + 5..].split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    fn peak_rss_mib(&self) -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kb: f64 = s
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct S3 {
    client: Client<HttpConnector, Body>,
    addr: String,
}

impl S3 {
    fn signed(&self, method: Method, path: &str, len: Option<u64>, body: Body) -> Request<Body> {
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let amz_date = now.format(&fmt).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_str(&self.addr).unwrap());
        headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).unwrap());
        headers.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static("UNSIGNED-PAYLOAD"),
        );
        let signed = ["host", "x-amz-content-sha256", "x-amz-date"];
        let input = CanonicalRequestInput {
            method: method.as_str(),
            path,
            query: "",
            headers: &headers,
            signed_headers: &signed,
            payload_hash: "UNSIGNED-PAYLOAD",
            normalize_path: false,
            exclude_param: None,
        };
        let sig = compute_signature(SK, &amz_date, "us-east-1", "s3", &input).signature;
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={AK}/{}/us-east-1/s3/aws4_request, SignedHeaders={}, Signature={sig}",
            &amz_date[..8],
            signed.join(";")
        );
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        if let Some(n) = len {
            req = req.header("content-length", n);
        }
        req.header("authorization", auth).body(body).unwrap()
    }

    async fn send(&self, req: Request<Body>) -> (u16, u64) {
        let resp = self.client.request(req).await.expect("request");
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.expect("body").into_data() {
                n += d.len() as u64;
            }
        }
        (status, n)
    }

    async fn put_stream(&self, path: &str, size: u64, block: Bytes) -> (u16, u64) {
        let stream = futures::stream::unfold(0u64, move |sent| {
            let block = block.clone();
            async move {
                if sent >= size {
                    return None;
                }
                let n = (size - sent).min(block.len() as u64) as usize;
                Some((
                    Ok::<_, std::io::Error>(Frame::data(block.slice(..n))),
                    sent + n as u64,
                ))
            }
        });
        let body = BoxBody::new(StreamBody::new(stream));
        self.send(self.signed(Method::PUT, path, Some(size), body))
            .await
    }

    async fn put_small(&self, path: &str, data: Bytes) -> u16 {
        let len = data.len() as u64;
        let body = BoxBody::new(Full::new(data).map_err(|e| match e {}));
        self.send(self.signed(Method::PUT, path, Some(len), body))
            .await
            .0
    }

    async fn get(&self, path: &str) -> (u16, u64) {
        let body = BoxBody::new(Empty::new().map_err(|e| match e {}));
        self.send(self.signed(Method::GET, path, None, body)).await
    }
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn random_block() -> Bytes {
    let mut b = vec![0u8; MIB as usize];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for chunk in b.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(b)
}

/// Empties the page cache so reads come from the disk (root only). Returns
/// false where that is not permitted; reads are then hot-cache reads.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn read_file(p: &Path) -> f64 {
    let t = Instant::now();
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    rate(total, t.elapsed())
}

/// Disk write+fsync, cold read, hot read and cp+sync of one file.
fn disk_baseline(dir: &Path, size: u64, block: &Bytes) -> (f64, f64, f64, f64) {
    let p = dir.join("raw.bin");
    let t = Instant::now();
    let mut f = std::fs::File::create(&p).unwrap();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    let write = rate(size, t.elapsed());
    drop_caches();
    let cold = read_file(&p);
    let hot = read_file(&p);
    let t = Instant::now();
    let status = Command::new("cp")
        .arg(&p)
        .arg(dir.join("raw-copy.bin"))
        .status()
        .unwrap();
    assert!(status.success());
    Command::new("sync").status().unwrap();
    let cp = rate(size, t.elapsed());
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_file(dir.join("raw-copy.bin"));
    (write, cold, hot, cp)
}

async fn small_ops(s3: &S3, conc: usize, secs: u64, put: bool) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let data = Bytes::from(vec![7u8; 4096]);
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (s3, done, data) = (s3.clone(), done.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while (put && i < 10) || Instant::now() < deadline {
                let path = format!("/bench/small/{w}/{}", if put { i % 200 } else { i % 10 });
                let ok = if put {
                    s3.put_small(&path, data.clone()).await == 200
                } else {
                    s3.get(&path).await.0 == 200
                };
                assert!(ok, "small op failed");
                i += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let t = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let o = opts();
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/deltaglider_proxy");
    let _ = std::fs::remove_dir_all(&o.dir);
    std::fs::create_dir_all(&o.dir).unwrap();
    let block = random_block();
    println!(
        "deltaglider_proxy benchmark  (data dir {}, {} cores)",
        o.dir.display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    let cold_ok = drop_caches();
    let (dw, dr, dhot, dcp) = disk_baseline(&o.dir, o.big_mib * MIB, &block);
    let how = if cold_ok {
        "cold"
    } else {
        "page cache could not be dropped: hot"
    };
    println!(
        "disk  write+fsync {dw:>8.0} MiB/s   read {dr:>8.0} MiB/s ({how})   hot-cache read {dhot:>8.0} MiB/s   cp+sync {dcp:>8.0} MiB/s   ({} MiB file)",
        o.big_mib
    );

    let server = Server::start(&bin, &o.dir.join("data"));
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    let s3 = S3 {
        client: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(conn),
        addr: server.addr.clone(),
    };
    let body = BoxBody::new(Empty::new().map_err(|e| match e {}));
    assert_eq!(
        s3.send(s3.signed(Method::PUT, "/bench", None, body))
            .await
            .0,
        200
    );

    let size = o.big_mib * MIB;
    let t = Instant::now();
    let (st, _) = s3.put_stream("/bench/big.bin", size, block.clone()).await;
    assert_eq!(st, 200);
    let put = rate(size, t.elapsed());
    // The same file, read directly and through the server, cold and hot,
    // alternating, best of two rounds (the VM's disk is noisy).
    let file = o.dir.join("data/bench/big.bin");
    let (mut raw_cold, mut raw_hot, mut get_cold, mut get_hot) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..2 {
        drop_caches();
        raw_cold = raw_cold.max(read_file(&file));
        raw_hot = raw_hot.max(read_file(&file));
        drop_caches();
        let t = Instant::now();
        let (st, n) = s3.get("/bench/big.bin").await;
        assert_eq!((st, n), (200, size));
        get_cold = get_cold.max(rate(size, t.elapsed()));
        let t = Instant::now();
        let (st, n) = s3.get("/bench/big.bin").await;
        assert_eq!((st, n), (200, size));
        get_hot = get_hot.max(rate(size, t.elapsed()));
    }
    println!(
        "S3    PUT {put:>8.0} MiB/s ({:.0}% of disk write+fsync)   ({} MiB object)",
        100.0 * put / dw,
        o.big_mib
    );
    println!(
        "      GET {get_cold:>8.0} MiB/s vs direct read of the object file {raw_cold:>8.0} MiB/s ({how}): {:.0}%",
        100.0 * get_cold / raw_cold
    );
    println!(
        "      GET {get_hot:>8.0} MiB/s vs direct read of the object file {raw_hot:>8.0} MiB/s (hot cache): {:.0}%",
        100.0 * get_hot / raw_hot
    );

    for conc in [1usize, 16] {
        let p = small_ops(&s3, conc, o.secs, true).await;
        let g = small_ops(&s3, conc, o.secs, false).await;
        println!("4 KiB ops  concurrency {conc:>2}:  PUT {p:>8.0} ops/s   GET {g:>8.0} ops/s");
    }

    let huge = o.huge_mib * MIB;
    let t = Instant::now();
    let (st, _) = s3.put_stream("/bench/huge.bin", huge, block.clone()).await;
    assert_eq!(st, 200);
    let hput = rate(huge, t.elapsed());
    let t = Instant::now();
    let (st, n) = s3.get("/bench/huge.bin").await;
    assert_eq!((st, n), (200, huge));
    let hget = rate(huge, t.elapsed());
    println!(
        "S3    PUT         {:>8.0} MiB/s   GET  {:>8.0} MiB/s   ({} MiB object)",
        hput, hget, o.huge_mib
    );
    println!(
        "server peak RSS over the whole run: {:.1} MiB",
        server.peak_rss_mib()
    );

    encryption_bench(&o, &bin, &s3, &block).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&o.dir);
}

const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn enc_config(dir: &Path, data: &Path, key_id: &str, legacy: bool) -> PathBuf {
    let mut y = format!(
        "storage:\n  backend:\n    type: filesystem\n    path: {}\n  backend_encryption:\n    mode: aes256-gcm-proxy\n    key: \"${{env:DGP_ENCRYPTION_KEY}}\"\n    key_id: {key_id}\n",
        data.display()
    );
    if legacy {
        y.push_str("    legacy_key: \"${env:DGP_OLD_KEY}\"\n    legacy_key_id: bench-a\n");
    }
    let p = dir.join(format!("enc-{key_id}-{legacy}.yaml"));
    std::fs::write(&p, y).unwrap();
    p
}

async fn timed_get(s3: &S3, path: &str, want: u64, range: Option<&str>) -> (f64, Duration) {
    let body = BoxBody::new(Empty::new().map_err(|e| match e {}));
    let mut req = s3.signed(Method::GET, path, None, body);
    if let Some(r) = range {
        req.headers_mut()
            .insert("range", HeaderValue::from_str(r).unwrap());
    }
    let t = Instant::now();
    let (st, n) = s3.send(req).await;
    assert!(st == 200 || st == 206, "GET {path}: {st}");
    assert_eq!(n, want);
    (rate(n, t.elapsed()), t.elapsed())
}

/// Encrypted versus plaintext in the same run, AES-GCM per core, a range
/// read at the end of a large encrypted object, rotate-kek over many objects,
/// and the storage overhead per object.
async fn encryption_bench(o: &Opts, bin: &Path, plain: &S3, block: &Bytes) {
    use deltaglider_proxy::engine::crypto::{self, Dek};
    println!("-- encryption (aes256-gcm-proxy) --");
    // Raw AES-256-GCM, one core, through the writer the PUT path uses.
    let dek = Dek::generate();
    let n = 256 * MIB;
    let t = Instant::now();
    let mut w =
        crypto::SealingWriter::new(std::io::sink(), &dek, crypto::DEFAULT_CHUNK_EXP).unwrap();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len() as u64) as usize;
        w.write_plain(&block[..k]).unwrap();
        left -= k as u64;
    }
    w.finish().unwrap();
    println!(
        "AES-256-GCM seal, one core: {:.0} MiB/s",
        rate(n, t.elapsed())
    );

    let data = o.dir.join("enc-data");
    let server = Server::start_with(
        bin,
        &o.dir.join("unused"),
        Some(&enc_config(&o.dir, &data, "bench-a", false)),
        &[("DGP_ENCRYPTION_KEY", KEY_A)],
    );
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    let s3 = S3 {
        client: Client::builder(TokioExecutor::new()).build(conn),
        addr: server.addr.clone(),
    };
    let body = BoxBody::new(Empty::new().map_err(|e| match e {}));
    assert_eq!(
        s3.send(s3.signed(Method::PUT, "/enc", None, body)).await.0,
        200
    );

    let size = o.big_mib * MIB;
    let mut res = Vec::new();
    for (name, c, path) in [
        ("plaintext", plain, "/bench/e-big.bin"),
        ("encrypted", &s3, "/enc/big.bin"),
    ] {
        let t = Instant::now();
        assert_eq!(c.put_stream(path, size, block.clone()).await.0, 200);
        let put = rate(size, t.elapsed());
        let (get, _) = timed_get(c, path, size, None).await;
        res.push((name, put, get));
    }
    for (name, put, get) in &res {
        println!(
            "{name:>9}: PUT {put:>7.0} MiB/s   GET {get:>7.0} MiB/s   ({} MiB, hot cache)",
            o.big_mib
        );
    }
    println!(
        "encrypted/plaintext: PUT {:.0}%   GET {:.0}%",
        100.0 * res[1].1 / res[0].1,
        100.0 * res[1].2 / res[0].2
    );

    // 1 MiB at the end of a large object, encrypted vs plaintext (cold cache).
    let big = o.range_mib * MIB;
    assert_eq!(
        plain
            .put_stream("/bench/r-big.bin", big, block.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        s3.put_stream("/enc/r-big.bin", big, block.clone()).await.0,
        200
    );
    let range = format!("bytes={}-{}", big - MIB, big - 1);
    drop_caches();
    let (_, tp) = timed_get(plain, "/bench/r-big.bin", MIB, Some(&range)).await;
    drop_caches();
    let (_, te) = timed_get(&s3, "/enc/r-big.bin", MIB, Some(&range)).await;
    println!(
        "1 MiB range at the end of a {} MiB object (cold): plaintext {:.2} ms, encrypted {:.2} ms ({:.2}x)",
        o.range_mib,
        tp.as_secs_f64() * 1e3,
        te.as_secs_f64() * 1e3,
        te.as_secs_f64() / tp.as_secs_f64()
    );

    // Storage overhead of one object.
    for (k, sz) in [("o-1k", 1000u64), ("o-1m", MIB)] {
        let data_k = Bytes::from(vec![5u8; sz as usize]);
        assert_eq!(s3.put_small(&format!("/enc/{k}"), data_k).await, 200);
        let p = data.join("enc").join(k);
        let file = std::fs::metadata(&p).unwrap().len();
        let x = xattr::get(&p, "user.dg.metadata").unwrap().unwrap().len();
        println!(
            "overhead of a {sz}-byte object: body +{} bytes, metadata xattr {x} bytes",
            file - sz
        );
    }
    println!(
        "encrypted server peak RSS: {:.1} MiB",
        server.peak_rss_mib()
    );
    fuse_bench(o, bin, &s3, &data).await;
    drop(server);

    // rotate-kek over many objects: written straight to disk (fixture), then timed.
    let n_obj = o.rotate_objects;
    let kek = crypto::Kek::from_hex(KEY_A).unwrap();
    let kid = crypto::KeyId::new("bench-a").unwrap();
    let dir = data.join("enc").join("many");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..n_obj {
        let key = format!("many/{i:06}");
        let dek = Dek::generate();
        let body = crypto::encrypt_vec(b"x", &dek, crypto::DEFAULT_CHUNK_EXP).unwrap();
        let p = data.join("enc").join(&key);
        std::fs::write(&p, body).unwrap();
        let mut m = deltaglider_proxy::engine::ObjectMeta::new(
            1,
            "9dd4e461268c8034f5c8564e155c67a6".into(),
            std::time::SystemTime::now(),
        );
        m.encrypted = Some(deltaglider_proxy::engine::meta::ENCRYPTED_MARKER.into());
        m.key_id = Some("bench-a".into());
        m.wrapped_key = Some(
            crypto::wrap_dek(
                &kek,
                &kid,
                crypto::ObjectIdentity {
                    bucket: "enc",
                    key: &key,
                },
                &dek,
            )
            .to_base64(),
        );
        xattr::set(&p, "user.dg.metadata", &m.encode()).unwrap();
    }
    let t = Instant::now();
    let out = Command::new(bin)
        .args(["encryption", "rotate-kek", "--config"])
        .arg(enc_config(&o.dir, &data, "bench-b", true))
        .env("DGP_ENCRYPTION_KEY", KEY_B)
        .env("DGP_OLD_KEY", KEY_A)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "rotate-kek with {} extra small objects on the backend: {:.2} s wall  [{}]",
        n_obj,
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
    );
}

/// A `deltaglider_proxy mount` process; SIGTERM (clean unmount) on drop.
struct Mount {
    child: Child,
    mp: PathBuf,
}

fn mounted(mp: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mp.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

impl Mount {
    fn start(bin: &Path, mp: &Path, config: &Path, key: &str) -> Mount {
        std::fs::create_dir_all(mp).unwrap();
        let mp = mp.canonicalize().unwrap();
        let child = Command::new(bin)
            .arg("mount")
            .arg(&mp)
            .arg("--config")
            .arg(config)
            .env("DGP_ENCRYPTION_KEY", key)
            .stderr(Stdio::null())
            .spawn()
            .expect("start mount");
        let t = Instant::now();
        while !mounted(&mp) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "mount did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount { child, mp }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The FUSE view of the encrypted backend: sequential read of the 1 GiB
/// encrypted object against an S3 GET of it in the same run, `ls -lR` over
/// 10,000 objects (and how much object data that read: none), and 4 KiB
/// random reads per second on the encrypted object.
async fn fuse_bench(o: &Opts, bin: &Path, s3: &S3, data: &Path) {
    if !Path::new("/dev/fuse").exists() {
        println!("-- FUSE: skipped (no /dev/fuse) --");
        return;
    }
    println!("-- FUSE view (encrypted backend, `deltaglider_proxy mount`) --");
    let cfg = enc_config(&o.dir, data, "bench-a", false);
    let m = Mount::start(bin, &o.dir.join("mnt"), &cfg, KEY_A);
    let size = o.big_mib * MIB;
    let file = m.mp.join("enc/big.bin");
    // Alternating, best of three each (hot cache for the stored file).
    let (mut get, mut fuse) = (0f64, 0f64);
    for _ in 0..3 {
        get = get.max(timed_get(s3, "/enc/big.bin", size, None).await.0);
        fuse = fuse.max(read_file(&file));
    }
    println!(
        "sequential read of the {} MiB encrypted object: mount {fuse:>7.0} MiB/s   S3 GET {get:>7.0} MiB/s   ({:.0}%)",
        o.big_mib,
        100.0 * fuse / get
    );

    // 10,000 small objects in 100 directories, written straight to the
    // backend as encrypted objects (fixture), then listed through the mount.
    use deltaglider_proxy::engine::crypto::{self, Dek};
    let kek = crypto::Kek::from_hex(KEY_A).unwrap();
    let kid = crypto::KeyId::new("bench-a").unwrap();
    for d in 0..100 {
        let dir = data.join("enc").join(format!("tree/d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            let key = format!("tree/d{d:02}/f{f:03}");
            let dek = Dek::generate();
            let plain = vec![b'x'; 1000];
            let body = crypto::encrypt_vec(&plain, &dek, crypto::DEFAULT_CHUNK_EXP).unwrap();
            let p = data.join("enc").join(&key);
            std::fs::write(&p, body).unwrap();
            let mut meta = deltaglider_proxy::engine::ObjectMeta::new(
                1000,
                "c3e5b8c4b0b4ab5e2bb1a5f1d7b43c0b".into(),
                std::time::SystemTime::now(),
            );
            meta.encrypted = Some(deltaglider_proxy::engine::meta::ENCRYPTED_MARKER.into());
            meta.key_id = Some("bench-a".into());
            let id = crypto::ObjectIdentity {
                bucket: "enc",
                key: &key,
            };
            meta.wrapped_key = Some(crypto::wrap_dek(&kek, &kid, id, &dek).to_base64());
            xattr::set(&p, "user.dg.metadata", &meta.encode()).unwrap();
        }
    }
    drop_caches();
    let t = Instant::now();
    let out = Command::new("ls")
        .arg("-lR")
        .arg(m.mp.join("enc/tree"))
        .output()
        .unwrap();
    let took = t.elapsed();
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let files: Vec<&str> = listing.lines().filter(|l| l.starts_with("-r")).collect();
    assert_eq!(files.len(), 10_000);
    // Logical sizes from the metadata (the bodies on disk are 1040 bytes).
    assert!(
        files
            .iter()
            .all(|l| l.split_whitespace().nth(4) == Some("1000"))
    );
    println!(
        "ls -lR over {} objects in 100 directories (cold cache): {:.2} s (sizes from metadata, no object body opened)",
        files.len(),
        took.as_secs_f64()
    );

    // 4 KiB random reads on the encrypted object, no read-ahead.
    for threads in [1usize, 4] {
        let secs = o.secs;
        let done = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        let started = Instant::now();
        for th in 0..threads {
            let (file, done) = (file.clone(), done.clone());
            handles.push(std::thread::spawn(move || {
                use std::os::unix::fs::FileExt;
                let f = std::fs::File::open(&file).unwrap();
                // No read-ahead: each read is one 4 KiB request to the mount.
                let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random);
                let mut buf = vec![0u8; 4096];
                let pages = size / 4096;
                let deadline = Instant::now() + Duration::from_secs(secs);
                let mut n = 0u64;
                // Every page at most once (an odd multiplier permutes a
                // power-of-two range), so no read is a page-cache hit.
                let mut i = th as u64 * (pages / threads as u64);
                while Instant::now() < deadline && n < pages / threads as u64 {
                    let page = i.wrapping_mul(2_654_435_761) % pages;
                    f.read_exact_at(&mut buf, page * 4096).unwrap();
                    n += 1;
                    i += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        println!(
            "4 KiB random reads on the {} MiB encrypted object, {threads} thread(s): {:.0} reads/s",
            o.big_mib,
            done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
        );
    }
    println!(
        "mount process peak RSS: {:.1} MiB",
        std::fs::read_to_string(format!("/proc/{}/status", m.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    );
    drop(m);
}
