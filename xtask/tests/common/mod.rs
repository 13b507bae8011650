//! Running the `cargo xtask` binary as a user does, shared by the CLI tests.

use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `xtask ARGS` outside GitHub Actions; a panic fails the test whatever it asserts.
pub fn xtask<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).env_remove("GITHUB_ACTIONS").output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!r.stderr.contains("panicked"), "the CLI panicked:\n{}", r.stderr);
    r
}
