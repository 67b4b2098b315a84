//! The project's two commands and the steps behind them.
//!
//! - `cargo xtask sandbox`: install what is missing, build, start the portal
//!   against the local sandbox cloud on http://127.0.0.1:3000.
//! - `cargo xtask test`: format check, clippy, every Rust test, the Playwright suite.
//!
//! Also `cargo xtask setup` (tools only) and `cargo xtask build` (the browser
//! bundle and the server). Everything it installs comes from the package
//! registries (crates.io, PyPI, npm); nothing is downloaded from elsewhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

type Result<T = ()> = std::result::Result<T, String>;

const MOTO_LOCK: &str = "portal/sandbox/requirements.lock";
const BUNDLE_NAME: &str = "cloudpulse";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((c, rest)) => (c.as_str(), rest.to_vec()),
        None => ("help", Vec::new()),
    };
    let result = match command {
        "setup" => Project::new().and_then(|p| p.setup()),
        "build" => Project::new().and_then(|p| {
            p.setup()?;
            p.build_all()
        }),
        "sandbox" => Project::new().and_then(|p| p.sandbox(&rest)),
        "test" => Project::new().and_then(|p| p.test()),
        "shape" => Project::new().and_then(|p| p.workspace_shape()),
        "rust-tests" => Project::new().and_then(|p| {
            p.setup()?;
            p.build_all()?;
            let build = p.start_test_build()?;
            p.rust_tests(build)
        }),
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; see `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         sandbox [-- ARGS]  build and run the portal against the local sandbox cloud\n\
         test               fmt, clippy, all Rust tests and the Playwright suite\n\
         build              the browser bundle (optimised wasm) and the server\n\
         setup              install the tools the other commands need\n\
         rust-tests         build, then every Rust test binary, timed\n\
         shape              check the crates' layering and that builds and tests share features"
    );
}

struct Project {
    root: PathBuf,
    target: PathBuf,
}

impl Project {
    fn new() -> Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or("xtask is not inside the workspace")?
            .to_path_buf();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Project { root, target })
    }

    fn site_root(&self) -> PathBuf {
        self.target.join("site")
    }

    fn venv_python(&self) -> PathBuf {
        self.root.join(".venv/bin/python")
    }

    /// Tools built from crates.io for this project (the wasm-bindgen CLI),
    /// kept beside the build so they need no PATH entry.
    fn tools(&self) -> PathBuf {
        self.target.join("tools")
    }

    fn wasm_bindgen(&self) -> PathBuf {
        self.tools().join("bin/wasm-bindgen")
    }

    fn server_binary(&self) -> PathBuf {
        self.target.join("debug/cloudpulse")
    }

    fn cmd(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.root);
        // `cargo run` gave this process xtask's own package variables. Build
        // scripts that watch them (ring's watches CARGO_PKG_NAME and
        // CARGO_MANIFEST_DIR) would then see a change between a build started
        // here and one started from a shell, and rebuild ring and everything
        // above it: rustls, the AWS SDK, the portal.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || matches!(
                    name.as_ref(),
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "OUT_DIR"
                )
            {
                command.env_remove(name.as_ref());
            }
        }
        command
    }

    // ---- setup -------------------------------------------------------------

    fn setup(&self) -> Result {
        self.setup_except_wasm_bindgen()?;
        phase("wasm-bindgen CLI", || self.ensure_wasm_bindgen())
    }

    fn setup_except_wasm_bindgen(&self) -> Result {
        phase("rustup targets", || {
            run(self.cmd("rustup").args([
                "target",
                "add",
                "wasm32-unknown-unknown",
                "x86_64-unknown-linux-musl",
            ]))
        })?;
        phase("npm packages", || self.ensure_npm())?;
        phase("moto virtualenv", || self.ensure_venv())
    }

    /// The CLI must be exactly the version of the crate in Cargo.lock, or the
    /// generated glue does not match the wasm.
    fn ensure_wasm_bindgen(&self) -> Result {
        match self.wasm_bindgen_install()? {
            None => Ok(()),
            Some(mut install) => run(&mut install),
        }
    }

    /// The command that installs the wasm-bindgen CLI, or `None` when the
    /// right version is there already.
    fn wasm_bindgen_install(&self) -> Result<Option<Command>> {
        let wanted = locked_version(&self.root, "wasm-bindgen")?;
        let have = Command::new(self.wasm_bindgen())
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if have.as_deref() == Some(&format!("wasm-bindgen {wanted}")) {
            println!("wasm-bindgen {wanted} is installed");
            return Ok(None);
        }
        println!("installing wasm-bindgen-cli {wanted} (takes a few minutes, once)");
        let mut install = self.cmd("cargo");
        install
            .args([
                "install".as_ref(),
                "wasm-bindgen-cli".as_ref(),
                "--version".as_ref(),
                format!("={wanted}").as_ref(),
                "--root".as_ref(),
                self.tools().as_os_str(),
            ])
            // Its own build folder: sharing the workspace's would hold the
            // build lock and make clippy wait for it.
            .env("CARGO_TARGET_DIR", self.target.join("tools-build"));
        Ok(Some(install))
    }

    fn ensure_npm(&self) -> Result {
        let stamp = self.root.join("node_modules/.package-lock.json");
        let lock = self.root.join("package-lock.json");
        if newer_than(&stamp, &lock) {
            println!("node_modules is up to date");
            return Ok(());
        }
        run(self
            .cmd("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
    }

    fn ensure_venv(&self) -> Result {
        let python = self.venv_python();
        let stamp = self.root.join(".venv/.cloudpulse-lock");
        let lock = self.root.join(MOTO_LOCK);
        let wanted = std::fs::read_to_string(&lock)
            .map_err(|e| format!("cannot read {}: {e}", lock.display()))?;
        if python.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
            println!("the moto virtualenv is up to date");
            return Ok(());
        }
        if !python.is_file() {
            run(self.cmd("python3").args(["-m", "venv", ".venv"]))?;
        }
        run(self.cmd(&python.to_string_lossy()).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            MOTO_LOCK,
        ]))?;
        std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
    }

    // ---- build -------------------------------------------------------------

    fn build_all(&self) -> Result {
        // The instance service ships with the portal: sandbox deployments
        // upload the one beside the `cloudpulse` binary. It builds beside
        // the bundle (another target, another lock): the bundle's link-time
        // optimisation and wasm-opt each keep one core busy, not two.
        let mut server = self.cmd("cargo");
        server.args([
            "build",
            "-p",
            "cloudpulse-server",
            "-p",
            "cloudpulse-instance",
        ]);
        let server = Background::start("server", server)?;
        let bundle = phase("browser bundle", || self.build_bundle());
        phase(
            "server and instance service (built beside the bundle)",
            || server.wait(),
        )?;
        bundle
    }

    /// wasm32 build, wasm-bindgen glue, then binaryen's wasm-opt from npm
    /// (Debian's older wasm-opt emits wasm that breaks hydration).
    fn build_bundle(&self) -> Result {
        run(self.cmd("cargo").args([
            "build",
            "-p",
            "cloudpulse-frontend",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "wasm-release",
        ]))?;
        let wasm = self
            .target
            .join("wasm32-unknown-unknown/wasm-release/cloudpulse_frontend.wasm");
        let pkg = self.site_root().join("pkg");
        run(self.cmd(&self.wasm_bindgen().to_string_lossy()).args([
            "--target".as_ref(),
            "web".as_ref(),
            "--no-typescript".as_ref(),
            "--out-dir".as_ref(),
            pkg.as_os_str(),
            "--out-name".as_ref(),
            BUNDLE_NAME.as_ref(),
            wasm.as_os_str(),
        ]))?;
        let bg = pkg.join(format!("{BUNDLE_NAME}_bg.wasm"));
        let before = size_report(&bg)?;
        let optimised = pkg.join(format!("{BUNDLE_NAME}_bg.opt.wasm"));
        run(self.cmd("node").args([
            "node_modules/binaryen/bin/wasm-opt".as_ref(),
            "-Oz".as_ref(),
            "--enable-bulk-memory".as_ref(),
            "--enable-nontrapping-float-to-int".as_ref(),
            bg.as_os_str(),
            "-o".as_ref(),
            optimised.as_os_str(),
        ]))?;
        std::fs::rename(&optimised, &bg).map_err(|e| format!("cannot replace the wasm: {e}"))?;
        let after = size_report(&bg)?;
        println!("wasm: {before} after wasm-bindgen, {after} after wasm-opt -Oz");
        Ok(())
    }

    // ---- the two commands --------------------------------------------------

    fn sandbox(&self, extra: &[String]) -> Result {
        self.setup()?;
        self.build_all()?;
        let mut command = self.cmd(&self.server_binary().to_string_lossy());
        command
            .arg("sandbox")
            .args(extra.iter().filter(|a| *a != "--"))
            .env("CLOUDPULSE_SITE_ROOT", self.site_root())
            .env("CLOUDPULSE_MOTO_PYTHON", self.venv_python());
        println!("starting the portal; open http://127.0.0.1:3000 (Ctrl-C stops everything)");
        // Ctrl-C reaches the portal too (same process group); it shuts down
        // moto and itself, and we return its exit status.
        run(&mut command)
    }

    fn test(&self) -> Result {
        let started = Instant::now();
        self.setup_except_wasm_bindgen()?;
        // The CLI's build (minutes, once per machine) runs beside fmt and
        // clippy: on two cores each leaves the other idle often enough.
        let install = self
            .wasm_bindgen_install()?
            .map(|install| Background::start("wasm-bindgen", install))
            .transpose()?;
        let checks = self.static_checks();
        phase(
            "wasm-bindgen CLI (built beside the checks)",
            || match install {
                Some(install) => install.wait(),
                None => Ok(()),
            },
        )?;
        checks?;
        self.build_all()?;
        phase("the shipped binary refuses test faults", || {
            self.refuses_test_faults()
        })?;
        // The tests build (with test-only features, into other files) while
        // the browser tests drive the binary people run.
        let test_build = self.start_test_build()?;
        phase("Playwright", || {
            run(self
                .cmd("npx")
                .args(["playwright", "test", "--config", "e2e/playwright.config.ts"])
                .env("CLOUDPULSE_BIN", self.server_binary())
                .env("CLOUDPULSE_SITE_ROOT", self.site_root())
                .env("CLOUDPULSE_MOTO_PYTHON", self.venv_python())
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
        })?;
        phase("Rust tests", || self.rust_tests(test_build))?;
        println!(
            "all checks passed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Formatting, the workspace's shape, and clippy on both sides.
    fn static_checks(&self) -> Result {
        phase("cargo fmt --check", || {
            run(self.cmd("cargo").args(["fmt", "--all", "--check"]))
        })?;
        phase("clippy (server side)", || {
            run(self.cmd("cargo").args([
                "clippy",
                "--workspace",
                "--exclude",
                "cloudpulse-frontend",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
        phase("clippy (browser side)", || {
            run(self.cmd("cargo").args([
                "clippy",
                "-p",
                "cloudpulse-frontend",
                "--target",
                "wasm32-unknown-unknown",
                "--",
                "-D",
                "warnings",
            ]))
        })?;
        phase("workspace shape", || self.workspace_shape())
    }
}

impl Project {
    /// What the crates' layering promises, checked on the resolved graph:
    /// the domain crate and the rooms below the pages pull in no Leptos, and
    /// a host build of the whole workspace never turns on `hydrate` (which
    /// would make the server's pages run browser code).
    fn workspace_shape(&self) -> Result {
        let tree = |args: &[&str]| -> Result<String> {
            let output = self
                .cmd("cargo")
                .args(["tree", "--prefix", "none"])
                .args(args)
                .output()
                .map_err(|e| format!("cannot run cargo tree: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "cargo tree {args:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        };
        let mut broken = Vec::new();
        for (krate, banned) in [
            ("cloudpulse-core", &["leptos", "aws-", "sqlx", "tokio"][..]),
            ("cloudpulse-engine", &["leptos"][..]),
            ("cloudpulse-telemetry", &["leptos"][..]),
            ("cloudpulse-sandbox", &["leptos"][..]),
        ] {
            let deps = tree(&["-p", krate, "-e", "normal"])?;
            for line in deps.lines() {
                if banned.iter().any(|b| line.starts_with(b)) {
                    broken.push(format!("{krate} depends on {line}"));
                }
            }
        }
        let app = tree(&["--workspace", "-e", "features", "-i", "cloudpulse-app"])?;
        if app.contains("feature \"hydrate\"") {
            broken.push("a host build of the workspace enables cloudpulse-app's `hydrate`".into());
        }
        if !app.contains("feature \"ssr\"") {
            broken.push("a host build of the workspace lacks cloudpulse-app's `ssr`".into());
        }
        // A crate whose features differ between the build and the tests is
        // compiled twice, with everything above it (see "One feature set" in
        // the workspace Cargo.toml).
        let features = |args: &[&str]| -> Result<std::collections::BTreeMap<String, String>> {
            let listing = tree(&[args, &["-f", "{p} {f}"]].concat())?;
            Ok(listing
                .lines()
                .filter(|line| !line.contains(" (/"))
                .filter_map(|line| {
                    let line = line.trim_end_matches(" (*)");
                    let mut words = line.splitn(3, ' ');
                    let package = format!("{} {}", words.next()?, words.next()?);
                    Some((package, words.next().unwrap_or("").to_string()))
                })
                .collect())
        };
        let build = features(&[
            "-p",
            "cloudpulse-server",
            "-p",
            "cloudpulse-instance",
            "-e",
            "normal,build",
        ])?;
        let test = features(&[
            "--workspace",
            "--exclude",
            "cloudpulse-frontend",
            "-e",
            "normal,build,dev",
        ])?;
        for (package, built_with) in &build {
            if let Some(tested_with) = test.get(package) {
                if tested_with != built_with {
                    broken.push(format!(
                        "{package} is built with [{built_with}] but tested with [{tested_with}]"
                    ));
                }
            }
        }
        if broken.is_empty() {
            println!(
                "layering holds: no leptos below the pages, no hydrate on the host, \
                 one feature set for {} shared crates",
                build.len()
            );
            Ok(())
        } else {
            Err(broken.join("; "))
        }
    }

    /// Builds every test binary, at the lowest CPU priority, so it can run
    /// while the browser tests (which mostly wait on the sandbox) do; cargo's
    /// JSON messages go to a file [`Self::rust_tests`] reads.
    fn start_test_build(&self) -> Result<TestBuild> {
        let messages = self.target.join("test-build.json");
        let file = std::fs::File::create(&messages)
            .map_err(|e| format!("cannot create {}: {e}", messages.display()))?;
        let mut command = self.cmd("nice");
        command
            .args(["-n", "19", "cargo", "test"])
            .args(TEST_PACKAGES)
            .args(["--no-run", "--message-format=json-render-diagnostics"])
            .stdout(file);
        Ok(TestBuild {
            child: command
                .spawn()
                .map_err(|e| format!("cannot build the tests: {e}"))?,
            started: Instant::now(),
            messages,
        })
    }

    /// Every test binary, even after one fails, a few at a time (their tests
    /// mostly wait on the sandbox's clock, not on the CPU), each one's output
    /// shown whole when it ends; a table at the end says which took how long
    /// and which failed. `CLOUDPULSE_TEST_JOBS` sets how many run at once.
    fn rust_tests(&self, build: TestBuild) -> Result {
        let built = build.wait()?;
        let jobs: usize = std::env::var("CLOUDPULSE_TEST_JOBS")
            .ok()
            .and_then(|j| j.parse().ok())
            .filter(|j| *j > 0)
            .unwrap_or(3);
        let started = Instant::now();
        let mut queue: std::collections::VecDeque<TestBinary> = built.binaries.into();
        let mut running: Vec<Running> = Vec::new();
        let mut results: Vec<(String, f64, String)> = Vec::new();
        while !queue.is_empty() || !running.is_empty() {
            // A binary that measures CPU (the stress test reads how busy an
            // instance is) runs only once the others are done.
            let alone = |b: &TestBinary| ALONE.contains(&b.name.as_str());
            let limit = match queue.front() {
                Some(next) if alone(next) => 1,
                _ => jobs,
            };
            if queue.front().is_some_and(alone) && !running.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
                self.reap(&mut running, &mut results)?;
                continue;
            }
            while running.len() < limit {
                let Some(binary) = queue.pop_front() else {
                    break;
                };
                let log = self
                    .target
                    .join(format!("test-{}.log", results.len() + running.len()));
                let (file, err) = log_file(&log)?;
                let child = self
                    .cmd(&binary.executable.to_string_lossy())
                    .current_dir(&binary.dir)
                    .env("CARGO_MANIFEST_DIR", &binary.dir)
                    .env("CLOUDPULSE_MOTO_PYTHON", self.venv_python())
                    .env("CLOUDPULSE_SITE_ROOT", self.site_root())
                    .stdout(file)
                    .stderr(err)
                    .spawn()
                    .map_err(|e| format!("cannot run {}: {e}", binary.name))?;
                println!("---- {} started", binary.name);
                running.push((binary, child, log, Instant::now()));
            }
            std::thread::sleep(Duration::from_millis(200));
            self.reap(&mut running, &mut results)?;
        }
        let doc = Instant::now();
        let doc_tests = run(self
            .cmd("cargo")
            .args(["test", "--doc"])
            .args(TEST_PACKAGES)
            .env("CLOUDPULSE_MOTO_PYTHON", self.venv_python()));
        results.push((
            "doc tests".into(),
            doc.elapsed().as_secs_f64(),
            match &doc_tests {
                Ok(()) => "ok".into(),
                Err(e) => format!("FAILED: {e}"),
            },
        ));
        println!("---- test binaries ({jobs} at a time) ----");
        println!(
            "{:>8.1} s  building the tests (beside the browser tests)",
            built.seconds
        );
        for (name, seconds, result) in &results {
            println!("{seconds:>8.1} s  {name}: {result}");
        }
        println!(
            "{:>8.1} s  running them all",
            started.elapsed().as_secs_f64()
        );
        let failed: Vec<&str> = results
            .iter()
            .filter(|(_, _, result)| !result.starts_with("ok"))
            .map(|(name, _, _)| name.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("failing: {}", failed.join(", ")))
        }
    }

    /// Collects the test binaries that ended: prints each one's output and
    /// records its result.
    fn reap(&self, running: &mut Vec<Running>, results: &mut Vec<(String, f64, String)>) -> Result {
        let mut index = 0;
        while index < running.len() {
            let status = running[index]
                .1
                .try_wait()
                .map_err(|e| format!("cannot wait for {}: {e}", running[index].0.name))?;
            let Some(status) = status else {
                index += 1;
                continue;
            };
            let (binary, _, log, since) = running.swap_remove(index);
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            println!("---- {} ({status})\n{output}", binary.name);
            let result = output
                .lines()
                .rev()
                .find_map(|l| l.trim_start().strip_prefix("test result: "))
                .map(str::to_string)
                .filter(|_| status.success())
                .unwrap_or_else(|| format!("FAILED ({status})"));
            results.push((binary.name, since.elapsed().as_secs_f64(), result));
        }
        Ok(())
    }

    /// A build without the `fault-injection` feature must not start when
    /// asked to arm faults.
    fn refuses_test_faults(&self) -> Result {
        let dir = std::env::temp_dir().join(format!("cloudpulse-faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let output = Command::new(self.server_binary())
            .args(["serve", "--bind", "127.0.0.1:0", "--database"])
            .arg(dir.join("refuse.db"))
            .env("CLOUDPULSE_TEST_FAULTS", "web/vpc=fatal")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .map_err(|e| format!("cannot run the portal binary: {e}"))?;
        let _ = std::fs::remove_dir_all(&dir);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && stderr.contains("cannot inject faults") {
            Ok(())
        } else {
            Err(format!(
                "the portal binary did not refuse CLOUDPULSE_TEST_FAULTS ({}): {stderr}",
                output.status
            ))
        }
    }
}

/// A command running while other phases go on; its output goes to a log,
/// shown if it fails.
struct Background {
    child: Child,
    log: PathBuf,
}

impl Background {
    fn start(name: &str, mut command: Command) -> Result<Background> {
        let log = std::env::temp_dir().join(format!(
            "cloudpulse-xtask-{}-{name}.log",
            std::process::id()
        ));
        let (file, err) = log_file(&log)?;
        let child = command
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
        Ok(Background { child, log })
    }

    fn wait(mut self) -> Result {
        let status = self
            .child
            .wait()
            .map_err(|e| format!("the background command did not finish: {e}"))?;
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        if status.success() {
            Ok(())
        } else {
            let tail: Vec<&str> = output.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!("failed ({status}):\n{}", tail.join("\n")))
        }
    }
}

/// The packages whose tests CI runs (the browser crate has none to run on
/// the host).
const TEST_PACKAGES: &[&str] = &["--workspace", "--exclude", "cloudpulse-frontend"];

/// Test binaries that run by themselves, after the others.
/// The scaling test and the instance service's unit tests measure how busy
/// a CPU is, which other suites beside them would change.
const ALONE: &[&str] = &[
    "cloudpulse-sandbox (scaling)",
    "cloudpulse-instance (cloudpulse_instance)",
];

/// A test binary running: the binary, its process, its log, since when.
type Running = (TestBinary, Child, PathBuf, Instant);

/// One test binary as cargo built it.
struct TestBinary {
    /// "package (target)".
    name: String,
    executable: PathBuf,
    /// The package's folder, where cargo would run it.
    dir: PathBuf,
}

/// The tests' build, under way in the background.
struct TestBuild {
    child: Child,
    started: Instant,
    messages: PathBuf,
}

/// The finished build: its binaries, slowest kinds first.
struct BuiltTests {
    binaries: Vec<TestBinary>,
    seconds: f64,
}

impl TestBuild {
    fn wait(mut self) -> Result<BuiltTests> {
        let status = self
            .child
            .wait()
            .map_err(|e| format!("the tests' build did not finish: {e}"))?;
        let seconds = self.started.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("the tests do not build ({status})"));
        }
        let messages = std::fs::read_to_string(&self.messages)
            .map_err(|e| format!("cannot read {}: {e}", self.messages.display()))?;
        let mut binaries = Vec::new();
        // Only test harnesses: `--no-run` also builds the examples and the
        // plain binaries, which are programs, not tests.
        for line in messages.lines().filter(|l| built_for_tests(l)) {
            let (Some(executable), Some(package), Some(target), Some(manifest)) = (
                json_string(line, "\"executable\":"),
                json_string(line, "\"package_id\":"),
                json_string(line, "\"name\":"),
                json_string(line, "\"manifest_path\":"),
            ) else {
                continue;
            };
            let package = package_name(&package);
            let dir = Path::new(&manifest)
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            binaries.push(TestBinary {
                name: format!("{package} ({target})"),
                executable: PathBuf::from(executable),
                dir,
            });
        }
        // The integration suites wait longest: start them first; the ones
        // that run alone go last.
        binaries.sort_by_key(|b| {
            let rank = [
                "cloudpulse-server (it)",
                "cloudpulse-engine (it)",
                "cloudpulse-sandbox (it)",
            ]
            .iter()
            .position(|slow| b.name == *slow)
            .unwrap_or(usize::MAX);
            (ALONE.contains(&b.name.as_str()), rank, b.name.clone())
        });
        Ok(BuiltTests { binaries, seconds })
    }
}

/// A new log file, twice: for a child's stdout and its stderr.
fn log_file(path: &Path) -> Result<(std::fs::File, std::fs::File)> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let again = file
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", path.display()))?;
    Ok((file, again))
}

fn phase(name: &str, body: impl FnOnce() -> Result) -> Result {
    println!("==> {name}");
    let started = Instant::now();
    let result = body();
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(()) => println!("<== {name}: {seconds:.1} s"),
        Err(_) => println!("<== {name}: FAILED after {seconds:.1} s"),
    }
    result.map_err(|e| format!("{name}: {e}"))
}

fn run(command: &mut Command) -> Result {
    let status = command
        .status()
        .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} failed ({status})", command.get_program()))
    }
}

/// The string value after `key` in one line of cargo's JSON messages (its
/// strings here are paths and names: no escapes to undo).
fn json_string(line: &str, key: &str) -> Option<String> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Whether one of cargo's artifact messages is a test harness: its profile
/// (not its target, where `"test":true` only says tests may be built from
/// it) says it was compiled with `--test`.
fn built_for_tests(line: &str) -> bool {
    let Some(start) = line.find("\"profile\":{") else {
        return false;
    };
    let profile = &line[start..];
    let profile = &profile[..profile.find('}').unwrap_or(profile.len())];
    profile.contains("\"test\":true")
}

/// A package's name from its id: "path+file:///…/portal/engine#cloudpulse-engine@0.1.0",
/// or "path+file:///…/xtask#0.1.0" when the folder is named as the package.
fn package_name(id: &str) -> String {
    let (path, fragment) = id.rsplit_once('#').unwrap_or(("", id));
    match fragment.split_once('@') {
        Some((name, _)) => name.to_string(),
        None => path.rsplit('/').next().unwrap_or(fragment).to_string(),
    }
}

/// The version of `name` in Cargo.lock.
fn locked_version(root: &Path, name: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let marker = format!("name = \"{name}\"\nversion = \"");
    let start = lock
        .find(&marker)
        .ok_or_else(|| format!("{name} is not in Cargo.lock"))?
        + marker.len();
    let end = lock[start..].find('"').ok_or("Cargo.lock is malformed")?;
    Ok(lock[start..start + end].to_string())
}

fn newer_than(file: &Path, than: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(file), modified(than)), (Some(a), Some(b)) if a >= b)
}

/// "849 KB (254 KB gzip)".
fn size_report(path: &Path) -> Result<String> {
    let raw = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let gzip = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run gzip: {e}"))?
        .stdout
        .len();
    Ok(format!("{} KB ({} KB gzip)", raw / 1000, gzip / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two of cargo's artifact messages, as `cargo test --no-run` prints
    /// them: the portal's binary (a program) and its integration tests.
    const PROGRAM: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/portal/server#cloudpulse-server@0.1.0","manifest_path":"/w/portal/server/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"cloudpulse","src_path":"/w/portal/server/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":"line-tables-only","debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/t/debug/cloudpulse"],"executable":"/t/debug/cloudpulse","fresh":true}"#;
    const HARNESS: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/portal/server#cloudpulse-server@0.1.0","manifest_path":"/w/portal/server/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"it","src_path":"/w/portal/server/tests/it/main.rs","edition":"2021","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":"line-tables-only","debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/t/debug/deps/it-1"],"executable":"/t/debug/deps/it-1","fresh":true}"#;

    #[test]
    fn only_harnesses_count_as_tests() {
        assert!(!built_for_tests(PROGRAM));
        assert!(built_for_tests(HARNESS));
        assert!(!built_for_tests(
            r#"{"reason":"build-finished","success":true}"#
        ));
    }

    #[test]
    fn package_names_come_from_ids() {
        assert_eq!(
            package_name("path+file:///w/portal/engine#cloudpulse-engine@0.1.0"),
            "cloudpulse-engine"
        );
        assert_eq!(package_name("path+file:///w/xtask#0.1.0"), "xtask");
    }
}
