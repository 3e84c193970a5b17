//! Starting the real binary and the stand-in servers for a test, on
//! 127.0.0.1 and free ports, and stopping them when the test ends.

// The tests and the benchmark each use a different part of this.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::readback::{Series, Stored};

/// The token the stand-in Drone accepts. Tests check it never shows up in
/// any output.
pub const TOKEN: &str = "tok-7d1e5a9c3b-secret";

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_drone-queue-cloudwatch");

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/drone").join(name)
}

/// A fresh folder under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The CloudWatch emulator the test script started.
pub fn emulator() -> String {
    std::env::var("DQC_TEST_CLOUDWATCH_ENDPOINT").expect(
        "DQC_TEST_CLOUDWATCH_ENDPOINT is not set: run the tests with ./scripts/test.sh, \
         which starts the CloudWatch emulator",
    )
}

/// The moto server the test script started, for Auto Scaling, EC2, SSM
/// and Secrets Manager.
pub fn moto() -> String {
    std::env::var("DQC_TEST_MOTO_ENDPOINT").expect(
        "DQC_TEST_MOTO_ENDPOINT is not set: run the tests with ./scripts/test.sh, \
         which starts moto",
    )
}

/// A namespace no other test uses, so read-backs see only this test's data.
pub fn namespace(test: &str) -> String {
    format!("DQCTest/{test}/{}", std::process::id())
}

/// A stand-in server from tests/standin, stopped on drop.
pub struct StandIn {
    child: Child,
    pub port: u16,
    lines: Receiver<String>,
}

impl StandIn {
    pub fn start(script: &str, args: &[String]) -> StandIn {
        let mut child = Command::new("python3")
            .arg(repo().join("tests/standin").join(script))
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the stand-in servers");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(20)).expect("stand-in did not start");
        let port = first
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from {script}: {first}"));
        StandIn { child, port, lines }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The JSON lines printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.lines.try_iter().map(|l| serde_json::from_str(&l).expect("JSON line")).collect()
    }

    /// Waits for `n` JSON lines satisfying `pred`, returning every line seen.
    pub fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        while seen.iter().filter(|v| pred(v)).count() < n {
            match self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) => seen.push(serde_json::from_str(&line).expect("JSON line")),
                Err(RecvTimeoutError::Timeout) => panic!("timed out; lines so far: {seen:#?}"),
                Err(RecvTimeoutError::Disconnected) => panic!("stand-in exited; lines: {seen:#?}"),
            }
        }
        seen
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in Drone answering the queue requests with `steps` in turn
/// (see tests/standin/drone.py).
pub fn drone(steps: Value) -> StandIn {
    let dir = scratch("drone");
    let script = dir.join("script.json");
    std::fs::write(&script, serde_json::to_vec(&steps).unwrap()).unwrap();
    StandIn::start(
        "drone.py",
        &["--token".into(), TOKEN.into(), "--script".into(), script.display().to_string()],
    )
}

/// A stand-in Drone that serves one fixture on every request.
pub fn drone_serving(fixture_name: &str) -> StandIn {
    drone(serde_json::json!([{ "fixture": fixture(fixture_name) }]))
}

/// The Lambda Runtime API emulator with these events.
pub fn lambda_api(events: &Value, deadline_ms: u64) -> StandIn {
    let dir = scratch("lambda");
    let file = dir.join("events.json");
    std::fs::write(&file, serde_json::to_vec(events).unwrap()).unwrap();
    StandIn::start(
        "lambda_api.py",
        &[
            "--events".into(),
            file.display().to_string(),
            "--deadline-ms".into(),
            deadline_ms.to_string(),
        ],
    )
}

/// A proxy in front of the emulator that answers the first `n` POSTs with
/// CloudWatch's throttling error.
pub fn throttle_proxy(n: usize) -> StandIn {
    StandIn::start(
        "throttle_proxy.py",
        &["--upstream".into(), emulator(), "--throttle".into(), n.to_string()],
    )
}

/// A proxy in front of moto that records every request and its `Action`.
pub fn recording_proxy() -> StandIn {
    StandIn::start(
        "throttle_proxy.py",
        &["--upstream".into(), moto(), "--throttle".into(), "0".into()],
    )
}

/// What a run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Both streams, for checks that hold for every output.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The environment every run starts from: nothing of the developer's
/// machine, no AWS profile, and no instance metadata look-ups.
pub fn base_env(cmd: &mut Command) {
    let home = scratch("home");
    let (config, credentials) = (home.join("aws-config"), home.join("aws-credentials"));
    std::fs::write(&config, "").unwrap();
    std::fs::write(&credentials, "").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// Credentials, region and endpoint for the emulator.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Everything a normal run needs: Drone, token, namespace and the emulator.
pub fn full_env(drone: &StandIn, namespace: &str) -> Vec<(String, String)> {
    let mut env = aws_env(&emulator());
    env.push(("DRONE_SERVER".into(), drone.url()));
    env.push(("DRONE_TOKEN".into(), TOKEN.into()));
    env.push(("CLOUDWATCH_METRICS_NAMESPACE".into(), namespace.into()));
    env
}

/// What a dry run needs: Drone, token and namespace, and nothing of AWS.
pub fn dry_run_env(drone: &StandIn) -> Vec<(String, String)> {
    vec![
        ("DRONE_SERVER".into(), drone.url()),
        ("DRONE_TOKEN".into(), TOKEN.into()),
        ("CLOUDWATCH_METRICS_NAMESPACE".into(), "Drone".into()),
    ]
}

/// Runs the binary to completion (killing it after 60 s).
pub fn run(env: &[(String, String)], args: &[&str]) -> Run {
    let mut cmd = Command::new(BIN);
    base_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v))).args(args);
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the binary ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run { code: status.code(), stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// Starts the binary without waiting (for the Lambda mode).
pub fn spawn(env: &[(String, String)]) -> Child {
    let mut cmd = Command::new(BIN);
    base_env(&mut cmd);
    cmd.envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn drain(mut stream: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}

/// Reads back the namespace from the emulator.
pub fn stored(namespace: &str) -> BTreeMap<Series, Stored> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(crate::readback::stored(&emulator(), namespace))
}

/// Splits read-back sums into the four stage counts and the
/// `OldestQueuedSeconds` waits, which depend on the time of the poll.
/// `BusyWorkers` is left out of both: [`busy`] reads it.
pub fn split_waits(sums: BTreeMap<Series, f64>) -> (BTreeMap<Series, f64>, BTreeMap<Series, f64>) {
    sums.into_iter()
        .filter(|(s, _)| s.metric != "BusyWorkers")
        .partition(|(s, _)| s.metric != "OldestQueuedSeconds")
}

/// The `BusyWorkers` sums, keyed by the group's labels.
pub fn busy(sums: &BTreeMap<Series, f64>) -> BTreeMap<BTreeMap<String, String>, f64> {
    sums.iter()
        .filter(|(s, _)| s.metric == "BusyWorkers")
        .map(|(s, v)| (s.dimensions.clone(), *v))
        .collect()
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The four count metrics of a group.
pub fn four(
    labels: &[(&str, &str)],
    queued: f64,
    running: f64,
    startable: f64,
    blocked: f64,
) -> Vec<(Series, f64)> {
    vec![
        (series("QueuedBuilds", labels), queued),
        (series("RunningBuilds", labels), running),
        (series("StartableBuilds", labels), startable),
        (series("BlockedBuilds", labels), blocked),
    ]
}

/// `metric` of the group with these labels.
pub fn series(metric: &str, labels: &[(&str, &str)]) -> Series {
    Series {
        metric: metric.into(),
        dimensions: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

/// The stored sums, keyed by series, after checking that each series got
/// exactly `samples` points, all in one minute, with the metric's unit.
pub fn sums(stored: &BTreeMap<Series, Stored>, samples: f64) -> BTreeMap<Series, f64> {
    let minutes: std::collections::BTreeSet<i64> =
        stored.values().flat_map(|s| s.minutes.clone()).collect();
    assert!(minutes.len() <= 1, "points spread over several minutes: {minutes:?}");
    stored
        .iter()
        .map(|(series, s)| {
            assert_eq!(s.samples, samples, "{series:?}");
            let unit = if series.metric == "OldestQueuedSeconds" { "Seconds" } else { "Count" };
            assert!(s.units.iter().all(|u| u == unit), "{series:?}: {:?}", s.units);
            (series.clone(), s.sum)
        })
        .collect()
}

/// A free port on 127.0.0.1 (for servers that cannot be told to pick one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Replaces the stand-in Drone's answers; the next queue request gets the
/// first of `steps`.
pub fn set_script(drone: &StandIn, steps: Value) {
    let body = serde_json::to_vec(&steps).unwrap();
    let answer = http(&drone.url(), "PUT", "/_standin/script", &body);
    assert_eq!(answer.status, 204, "{}", answer.body);
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// Header lines, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`, answered within 10 s;
/// small enough to see exactly what a server sends.
pub fn http(base: &str, method: &str, path_and_query: &str, body: &[u8]) -> Answer {
    use std::io::Write;
    let authority = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer { status: status.unwrap_or(0), headers, body: body.to_string() }
}

/// The binary running as a daemon, its standard error read line by line.
pub struct Daemon {
    child: Child,
    lines: Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    /// Standard output when nothing reads it.
    _unread: Option<std::process::ChildStdout>,
    /// Every line of standard error read so far.
    pub log: Vec<String>,
}

impl Daemon {
    pub fn start(env: &[(String, String)]) -> Daemon {
        Daemon::start_with(env, true)
    }

    /// A daemon whose standard output nobody reads: once the pipe is
    /// full, every write to it blocks.
    pub fn start_unread(env: &[(String, String)]) -> Daemon {
        Daemon::start_with(env, false)
    }

    fn start_with(env: &[(String, String)], read_stdout: bool) -> Daemon {
        let mut child = spawn(env);
        let stderr = child.stderr.take().unwrap();
        let pipe = child.stdout.take().unwrap();
        let (stdout, unread) =
            if read_stdout { (Some(drain(pipe)), None) } else { (None, Some(pipe)) };
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines, stdout, _unread: unread, log: Vec::new() }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            match self.lines.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    panic!("no log line with {needle:?}; log so far:\n{}", self.log.join("\n"))
                }
            }
        }
    }

    /// The address of the Prometheus endpoint, once it listens.
    pub fn metrics_base(&mut self) -> String {
        let line = self.wait_log("Prometheus endpoint listening on", Duration::from_secs(20));
        let start = line.find("http://").unwrap();
        let url = line[start..].split_whitespace().next().unwrap();
        url.trim_end_matches("/metrics").to_string()
    }

    /// Sends `signal` (a libc signal number).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the id of a child this test started.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Waits up to `timeout` for the exit; the exit code, or `None` if it
    /// still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Standard output and error after the exit.
    pub fn finish(mut self) -> Run {
        let code = self.wait_exit(Duration::from_secs(20)).expect("the daemon did not exit");
        self.log.extend(self.lines.try_iter());
        let stdout = self.stdout.take().map(|s| s.join().unwrap()).unwrap_or_default();
        Run { code, stdout, stderr: self.log.join("\n") }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server scraping `targets` every second, with its data in a
/// scratch folder; stopped on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
}

impl Prometheus {
    pub fn start(target: &str) -> Prometheus {
        let binary = std::env::var("DQC_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let dir = scratch("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
                 scrape_configs:\n  - job_name: drone-queue\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not run {binary:?} ({e}): run the tests with ./scripts/test.sh, which \
                     installs Debian's prometheus package"
                )
            });
        let server = Prometheus { child, url: format!("http://127.0.0.1:{port}") };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(&server.url, "GET", "/-/ready", b"").status == 200;
            if ready {
                return server;
            }
            assert!(Instant::now() < end, "Prometheus did not start; see {}", dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// An instant query: each series' labels (without `__name__`, `job`
    /// and `instance`) with its value.
    pub fn query(&self, query: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
        let url =
            reqwest::Url::parse_with_params("http://x/api/v1/query", [("query", query)]).unwrap();
        let answer =
            http(&self.url, "GET", &format!("/api/v1/query?{}", url.query().unwrap()), b"");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let json: Value = serde_json::from_str(&answer.body).unwrap();
        json["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(k, _)| !["__name__", "job", "instance"].contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (labels, r["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    }

    /// Queries until the answer equals `expected`, for at most `timeout`.
    pub fn wait_for(
        &self,
        query: &str,
        expected: &BTreeMap<BTreeMap<String, String>, f64>,
        timeout: Duration,
    ) {
        let end = Instant::now() + timeout;
        loop {
            let got = self.query(query);
            if &got == expected {
                return;
            }
            assert!(Instant::now() < end, "{query}: expected {expected:?}, got {got:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Labels as a query result holds them.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
