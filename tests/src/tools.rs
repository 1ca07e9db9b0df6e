//! The outside programs the end-to-end tests drive, set up by the tests
//! themselves so that `cargo test` passes on a fresh machine with nothing
//! installed by hand:
//!
//! - the Python S3 clients (boto3, the aws CLI, rclone's release binary,
//!   obstore), pinned in `tests/s3/requirements.txt`, go into a virtual
//!   environment under the target directory (`target/test-python`), made
//!   on first use and made again when the pins change; nothing outside
//!   the checkout is touched;
//! - Debian tools (tmux, openssl, systemd-analyze) are used from `PATH`;
//!   when one is missing and the tests run as root on a Debian-like
//!   system they install its package with `apt-get`, otherwise the test
//!   fails with a message naming the package. A missing tool never
//!   counts as a pass.
//!
//! Several test processes may start at once (`cargo nextest`): a lock file
//! beside the environment makes one of them build it while the others
//! wait.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The pinned client packages.
const REQUIREMENTS: &str = include_str!("../s3/requirements.txt");

/// The virtual environment's directory: beside the test binaries'
/// profile directories (`target/test-python`).
fn venv_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in target/<profile>/deps")
        .join("test-python")
}

/// The `bin` directory of the Python environment holding the pinned S3
/// clients (its `python`, `aws`, `rclone`), made on first use.
pub fn python_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let venv = venv_dir();
        if let Err(e) = ensure_venv(&venv) {
            panic!(
                "setting up the test clients in {} failed: {e}\n\
                 (needs python3 with its venv module: Debian package python3-venv)",
                venv.display()
            );
        }
        venv.join("bin")
    })
}

/// The environment's `python`.
pub fn python() -> PathBuf {
    python_bin_dir().join("python")
}

/// `PATH` with the environment's `bin` first, so scripts find `aws` and
/// `rclone` there.
pub fn path_with_clients() -> std::ffi::OsString {
    let mut dirs = vec![python_bin_dir().to_path_buf()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH entries without separators")
}

fn ensure_venv(venv: &Path) -> Result<(), String> {
    let parent = venv.parent().ok_or("no parent directory")?;
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let lock_path = parent.join("test-python.lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", lock_path.display()))?;
    let stamp = venv.join("hangar-requirements.txt");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == REQUIREMENTS) {
        return Ok(());
    }
    eprintln!(
        "setting up the test clients (boto3, aws CLI, rclone, obstore) in {} ...",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    let req = venv.join("requirements.txt");
    std::fs::write(&req, REQUIREMENTS).map_err(|e| format!("{}: {e}", req.display()))?;
    run(Command::new(venv.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
        ])
        .arg(&req)
        // Installs into the environment only, whatever the user's pip
        // configuration says about user installs.
        .env("PIP_USER", "0"))?;
    std::fs::write(&stamp, REQUIREMENTS).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} ended with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Make sure the command `program` (from the Debian package `package`)
/// is on `PATH`: installed with `apt-get` when missing and the tests run
/// as root where apt exists; otherwise a failure naming the package.
pub fn require_tool(program: &str, package: &str) {
    if on_path(program) {
        return;
    }
    // One installer at a time within this process; apt itself locks
    // against other processes (and waits: `DPkg::Lock::Timeout`).
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = APT.lock().unwrap_or_else(|e| e.into_inner());
    if on_path(program) {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root && on_path("apt-get") {
        eprintln!("{program} is missing: installing the Debian package {package} ...");
        let apt = |args: &[&str]| {
            run(Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=300", "-qq"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"))
        };
        let res = apt(&["update"]).and_then(|()| apt(&["install", "-y", package]));
        if let Err(e) = res {
            panic!("{program} is missing and installing the Debian package {package} failed: {e}");
        }
        if on_path(program) {
            return;
        }
    }
    panic!(
        "this test needs {program}, which is not installed: install the Debian package \
         {package} (apt-get install {package})"
    );
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(program);
            f.metadata().is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

#[cfg(test)]
mod tests {
    /// A tool that is missing and cannot be installed fails the test with
    /// the package's name, never a silent skip (as root the install is
    /// tried first and fails: no such package).
    #[test]
    #[should_panic(expected = "hangar-test-no-such-package")]
    fn a_missing_tool_fails_naming_its_package() {
        super::require_tool("hangar-test-no-such-program", "hangar-test-no-such-package");
    }

    #[test]
    fn a_present_tool_is_found() {
        assert!(super::on_path("sh"));
        assert!(!super::on_path("hangar-test-no-such-program"));
    }
}
