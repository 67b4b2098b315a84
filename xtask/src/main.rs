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
use std::process::{Command, ExitCode};
use std::time::Instant;

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
         setup              install the tools the other commands need"
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
        command
    }

    // ---- setup -------------------------------------------------------------

    fn setup(&self) -> Result {
        phase("rustup targets", || {
            run(self.cmd("rustup").args([
                "target",
                "add",
                "wasm32-unknown-unknown",
                "x86_64-unknown-linux-musl",
            ]))
        })?;
        phase("wasm-bindgen CLI", || self.ensure_wasm_bindgen())?;
        phase("npm packages", || self.ensure_npm())?;
        phase("moto virtualenv", || self.ensure_venv())
    }

    /// The CLI must be exactly the version of the crate in Cargo.lock, or the
    /// generated glue does not match the wasm.
    fn ensure_wasm_bindgen(&self) -> Result {
        let wanted = locked_version(&self.root, "wasm-bindgen")?;
        let have = Command::new(self.wasm_bindgen())
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if have.as_deref() == Some(&format!("wasm-bindgen {wanted}")) {
            println!("wasm-bindgen {wanted} is installed");
            return Ok(());
        }
        println!("installing wasm-bindgen-cli {wanted} (takes a few minutes, once)");
        run(self.cmd("cargo").args([
            "install".as_ref(),
            "wasm-bindgen-cli".as_ref(),
            "--version".as_ref(),
            format!("={wanted}").as_ref(),
            "--root".as_ref(),
            self.tools().as_os_str(),
        ]))
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
        phase("browser bundle", || self.build_bundle())?;
        // The instance service ships with the portal: sandbox deployments
        // upload the one beside the `cloudpulse` binary.
        phase("server and instance service", || {
            run(self.cmd("cargo").args([
                "build",
                "-p",
                "cloudpulse-server",
                "-p",
                "cloudpulse-instance",
            ]))
        })
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
        self.setup()?;
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
        self.build_all()?;
        phase("the shipped binary refuses test faults", || {
            self.refuses_test_faults()
        })?;
        // Before `cargo test`, which rebuilds the same path with test-only
        // features: the browser tests drive the binary people run.
        phase("Playwright", || {
            run(self
                .cmd("npx")
                .args(["playwright", "test", "--config", "e2e/playwright.config.ts"])
                .env("CLOUDPULSE_BIN", self.server_binary())
                .env("CLOUDPULSE_SITE_ROOT", self.site_root())
                .env("CLOUDPULSE_MOTO_PYTHON", self.venv_python())
                .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"))
        })?;
        phase("Rust tests", || {
            run(self
                .cmd("cargo")
                .args(["test", "--workspace", "--exclude", "cloudpulse-frontend"])
                .env("CLOUDPULSE_MOTO_PYTHON", self.venv_python())
                .env("CLOUDPULSE_SITE_ROOT", self.site_root()))
        })?;
        println!(
            "all checks passed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

impl Project {
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
