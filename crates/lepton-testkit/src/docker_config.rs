//! [`DockerConfig`]: a throwaway docker config directory for a child process's `DOCKER_CONFIG`,
//! holding a `config.json` with inline credentials, a credential helper, or nothing at all.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine;
use tempfile::TempDir;

/// A temporary `$DOCKER_CONFIG` directory. Pass [`DockerConfig::dir`] to a child with
/// `Command::env("DOCKER_CONFIG", ..)` (never set it on the test process itself).
pub struct DockerConfig {
    dir: TempDir,
}

impl DockerConfig {
    /// A directory with no `config.json`: no credentials for any registry.
    pub fn empty() -> std::io::Result<DockerConfig> {
        let dir = tempfile::Builder::new()
            .prefix("lepton-docker-config-")
            .tempdir()?;
        Ok(DockerConfig { dir })
    }

    /// `config.json` with `{"auths": {registry: {"auth": base64("user:pass")}}}`, as
    /// `docker login` writes it without a credential store.
    pub fn with_auth(registry: &str, user: &str, pass: &str) -> std::io::Result<DockerConfig> {
        let config = DockerConfig::empty()?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        config.write_config(&serde_json::json!({ "auths": { registry: { "auth": auth } } }))?;
        Ok(config)
    }

    /// `config.json` with `{"credHelpers": {registry: helper}}` and an executable
    /// `docker-credential-<helper>` in [`DockerConfig::helper_bin_dir`] that answers `get` for
    /// `registry` (and nothing else) with `user`/`pass`, recording every server it is asked
    /// about (see [`DockerConfig::helper_calls`]). Put the directory on the child's `PATH` with
    /// [`DockerConfig::path_with_helpers`].
    pub fn with_credential_helper(
        registry: &str,
        helper: &str,
        user: &str,
        pass: &str,
    ) -> std::io::Result<DockerConfig> {
        if helper.is_empty()
            || !helper
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("credential helper name {helper:?} must be letters, digits and `-`"),
            ));
        }
        let config = DockerConfig::empty()?;
        config.write_config(&serde_json::json!({ "credHelpers": { registry: helper } }))?;
        let bin = config.helper_bin_dir();
        std::fs::create_dir_all(&bin)?;
        // The answer and the server it is for live in files next to the script, so no user
        // input is ever spliced into shell code.
        std::fs::write(bin.join("server"), registry)?;
        std::fs::write(
            bin.join("response.json"),
            serde_json::to_vec(&serde_json::json!({
                "ServerURL": registry,
                "Username": user,
                "Secret": pass,
            }))
            .map_err(std::io::Error::other)?,
        )?;
        let script = bin.join(format!("docker-credential-{helper}"));
        std::fs::write(&script, HELPER_SCRIPT)?;
        make_executable(&script)?;
        Ok(config)
    }

    /// The directory to pass as `DOCKER_CONFIG`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where [`DockerConfig::with_credential_helper`] puts the helper executable.
    pub fn helper_bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// This process's `PATH` with [`DockerConfig::helper_bin_dir`] in front, for a child's env.
    pub fn path_with_helpers(&self) -> std::io::Result<OsString> {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let dirs = std::iter::once(self.helper_bin_dir()).chain(std::env::split_paths(&inherited));
        std::env::join_paths(dirs).map_err(std::io::Error::other)
    }

    /// The server addresses the credential helper was asked for, in order.
    pub fn helper_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.helper_bin_dir().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_config(&self, config: &serde_json::Value) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.path().join("config.json"), json)
    }
}

/// The docker credential helper protocol, `get` only: the server address arrives on stdin, the
/// answer is `{"Username", "Secret"}` JSON on stdout, and an unknown server is an error.
const HELPER_SCRIPT: &str = r#"#!/bin/sh
# docker credential helper for lepton's tests (written by lepton-testkit).
dir="$(dirname "$0")"
if [ "$1" != get ]; then
    echo "only \`get\` is supported, not \`$1\`" >&2
    exit 1
fi
server="$(cat)"
printf '%s\n' "$server" >> "$dir/calls.log"
if [ "$server" = "$(cat "$dir/server")" ]; then
    cat "$dir/response.json"
else
    echo "credentials not found in native keychain"
    exit 1
fi
"#;

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "credential helper scripts need a Unix shell",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn ask_helper(config: &DockerConfig, helper: &str, server: &str) -> std::process::Output {
        let mut child = Command::new(format!("docker-credential-{helper}"))
            .arg("get")
            .env("PATH", config.path_with_helpers().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(server.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn inline_auth_is_base64_user_colon_pass() {
        let config = DockerConfig::with_auth("127.0.0.1:5000", "alice", "s3:cret").unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(config.dir().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(
            json["auths"]["127.0.0.1:5000"]["auth"],
            "YWxpY2U6czM6Y3JldA=="
        );
        assert!(
            !DockerConfig::empty()
                .unwrap()
                .dir()
                .join("config.json")
                .exists()
        );
    }

    #[test]
    fn credential_helper_answers_only_its_server() {
        let config = DockerConfig::with_credential_helper(
            "127.0.0.1:5000",
            "lepton-unit",
            "bob",
            "pa\"ss'$x",
        )
        .unwrap();
        let ok = ask_helper(&config, "lepton-unit", "127.0.0.1:5000");
        assert!(ok.status.success(), "{ok:?}");
        let answer: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(answer["Username"], "bob");
        assert_eq!(answer["Secret"], "pa\"ss'$x");
        let other = ask_helper(&config, "lepton-unit", "ghcr.io");
        assert!(!other.status.success());
        assert_eq!(config.helper_calls(), ["127.0.0.1:5000", "ghcr.io"]);
    }
}
