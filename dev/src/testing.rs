//! What every test file needs, once: the repository root, temporary
//! folders, the venv's Python running a reference script of `tests/`, the
//! shared datasets, "run a binary, assert success, parse its JSON", and a
//! server started on a free port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh, empty folder for one test (per process and thread), removed
/// when the value is dropped, at the end of the test whether it passes or
/// fails: imported networks put up to a gigabyte in one, and a full run
/// makes about ninety.
pub struct TempDir(PathBuf);

/// A fresh, empty folder for one test (see [`TempDir`]).
pub fn tempdir(tag: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!(
        "zfvis-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The venv's Python (`make test` creates the venv).
pub fn venv_python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// Run tests/`script` with the venv's Python; it must succeed. Its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(venv_python())
        .arg(root().join("tests").join(script))
        .args(args)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{script} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A file from ../shared/datasets, for the tests in `needs_shared` modules:
/// `make test` runs those only where the folder is present (and names them
/// where it is not), so a missing file here is a failure, never a pass.
pub fn shared(rel: &str) -> PathBuf {
    let p = root().join("../shared/datasets").join(rel);
    assert!(
        p.exists(),
        "{} is missing: this test needs ../shared/datasets (`make test` skips it there)",
        p.display()
    );
    p
}

/// The same file, or None where it is missing, for a test that checks
/// either case (CI, with ZFVIS_REQUIRE_SHARED=1, requires it).
pub fn shared_or_none(rel: &str) -> Option<PathBuf> {
    let p = root().join("../shared/datasets").join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var("ZFVIS_REQUIRE_SHARED").as_deref() != Ok("1"),
        "{} is missing and ZFVIS_REQUIRE_SHARED=1",
        p.display()
    );
    None
}

/// Run `exe` with `args` (in the test's working directory).
pub fn run(exe: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
}

/// Run `exe` with `args`; it must succeed and print JSON, which is returned.
pub fn run_json(exe: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(exe, args);
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        exe.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A running `exe serve` (the `zfvis` binary under test) on a free port,
/// over `models` with its store in `data`; killed on drop.
pub fn serve(exe: &Path, models: &Path, data: &Path, extra: &[&str]) -> crate::child::Server {
    crate::child::Server::start(exe, models, data, extra, "warn", |_| {}).unwrap()
}
