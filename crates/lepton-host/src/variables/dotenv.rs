//! Dotenv files for the environment variables providers, read with the `dotenvy` syntax Spin
//! uses (`KEY=value`, optional `export`, `#` comments, single and double quotes, multi-line
//! quoted values, `${VAR}` substitution from the process environment and earlier lines).
//!
//! Spin's always-present environment provider reads `.env` in its working directory (a
//! relative `.env`) after the process environment: a real `SPIN_VARIABLE_<NAME>` wins, and the
//! file is consulted only for names the environment lacks. Keys match exactly (the variable
//! name upper-cased after the prefix); a name given twice takes its last value. A missing file
//! is no file. lepton does the same with [`WorkingDirDotenv`]: the `.env` of the process's
//! working directory, read once — the first time an app loads, at start, since lepton never
//! changes its working directory — and kept for the life of the process (edit it, restart).
//! A malformed file is logged once and, as in Spin, every lookup that reaches it fails with
//! the same error naming the file and line, so an app needing one of its values fails to load.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

/// A dotenv file that could not be read or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {reason}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DotenvError {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line of the problem, when it is in the content.
    pub line: Option<usize>,
    /// What is wrong (never the line's text, which may hold a secret).
    pub reason: String,
}

/// Read and parse the dotenv file at `path`; `Ok(None)` if there is no such file.
pub fn read_dotenv(path: &Path) -> Result<Option<BTreeMap<String, String>>, DotenvError> {
    let error = |line: Option<usize>, reason: String| DotenvError {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(None, format!("cannot read: {e}"))),
    };
    let lines = Rc::new(std::cell::Cell::new(0));
    let reader = LineAtATime {
        rest: &bytes,
        lines: lines.clone(),
    };
    let mut values = BTreeMap::new();
    for item in dotenvy::from_read_iter(reader) {
        match item {
            Ok((key, value)) => {
                values.insert(key, value);
            }
            Err(dotenvy::Error::LineParse(text, at)) => {
                // `text` (the statement, or its value) ends on the last line read.
                let (below, reason) = if at >= text.len() {
                    // The file ended inside a quote: point at the line the statement starts on.
                    let statement = text.trim_end_matches(['\n', '\r']);
                    (
                        statement.matches('\n').count(),
                        "unterminated quote: the file ends inside this quoted value",
                    )
                } else {
                    // As many lines above the last as `text` has newlines after the problem.
                    let at = text.char_indices().nth(at).map_or(text.len(), |(b, _)| b);
                    (
                        text[at..].matches('\n').count(),
                        "invalid dotenv syntax (expected `KEY=value`)",
                    )
                };
                let line = lines.get().saturating_sub(below).max(1);
                return Err(error(Some(line), reason.into()));
            }
            Err(e) => return Err(error(Some(lines.get().max(1)), e.to_string())),
        }
    }
    Ok(Some(values))
}

/// Hands the parser one line per `read`, so the number of lines handed out is the line the
/// parser's current statement ends on (its buffered reader never holds more than one line).
struct LineAtATime<'a> {
    rest: &'a [u8],
    lines: Rc<std::cell::Cell<usize>>,
}

impl Read for LineAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.rest.is_empty() {
            return Ok(0);
        }
        let line_end = self
            .rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let n = line_end.min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        if n == line_end {
            self.lines.set(self.lines.get() + 1);
        }
        Ok(n)
    }
}

/// The values of the working directory's `.env` for the default environment provider, or the
/// error every lookup reaching it reports.
#[derive(Debug, Clone)]
pub struct WorkingDirDotenv(Arc<Result<BTreeMap<String, String>, DotenvError>>);

impl WorkingDirDotenv {
    /// `dir/.env`, read now (no file: no values). A malformed file is logged here.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(".env");
        let result = match read_dotenv(&path) {
            Ok(Some(values)) => {
                tracing::info!(path = %path.display(), count = values.len(), "read .env for the SPIN_VARIABLE_* provider");
                Ok(values)
            }
            Ok(None) => Ok(BTreeMap::new()),
            Err(e) => {
                tracing::error!(error = %e, "the working directory's .env is not usable: variables it would provide fail to resolve");
                Err(e)
            }
        };
        Self(Arc::new(result))
    }

    /// No `.env` at all.
    pub fn empty() -> Self {
        Self::from_values(BTreeMap::new())
    }

    /// These values, as if read from a file.
    pub fn from_values(values: BTreeMap<String, String>) -> Self {
        Self(Arc::new(Ok(values)))
    }

    /// The process's: its working directory's `.env`, read the first time this is called.
    pub fn process() -> Self {
        static PROCESS: OnceLock<WorkingDirDotenv> = OnceLock::new();
        PROCESS
            .get_or_init(|| match std::env::current_dir() {
                Ok(dir) => Self::load(&dir),
                Err(e) => {
                    tracing::warn!(error = %e, "no working directory: no .env is read");
                    Self::empty()
                }
            })
            .clone()
    }

    /// The value of `key`, `Ok(None)` if the file does not have it.
    pub(crate) fn get(&self, key: &str) -> Result<Option<String>, DotenvError> {
        match self.0.as_ref() {
            Ok(values) => Ok(values.get(key).cloned()),
            Err(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join(".env");
        std::fs::write(&path, text).expect("write .env");
        path
    }

    #[test]
    fn dotenv_syntax_as_spin_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "# comment\n\
             SPIN_VARIABLE_PLAIN=value # trailing comment\n\
             export SPIN_VARIABLE_EXPORTED=yes\n\
             SPIN_VARIABLE_SINGLE='a ${PLAIN} b'\n\
             SPIN_VARIABLE_DOUBLE=\"x=${SPIN_VARIABLE_PLAIN}\"\n\
             SPIN_VARIABLE_MULTI=\"one\ntwo\"\n\
             \n\
             SPIN_VARIABLE_TWICE=first\r\n\
             SPIN_VARIABLE_TWICE=second\n\
             SPIN_VARIABLE_EMPTY=\n",
        );
        let values = read_dotenv(&path).expect("parses").expect("exists");
        let get = |k: &str| values.get(k).map(String::as_str);
        assert_eq!(get("SPIN_VARIABLE_PLAIN"), Some("value"));
        assert_eq!(get("SPIN_VARIABLE_EXPORTED"), Some("yes"));
        assert_eq!(get("SPIN_VARIABLE_SINGLE"), Some("a ${PLAIN} b"));
        assert_eq!(get("SPIN_VARIABLE_DOUBLE"), Some("x=value"));
        assert_eq!(get("SPIN_VARIABLE_MULTI"), Some("one\ntwo"));
        assert_eq!(
            get("SPIN_VARIABLE_TWICE"),
            Some("second"),
            "the last one wins"
        );
        assert_eq!(get("SPIN_VARIABLE_EMPTY"), Some(""));
        assert_eq!(values.len(), 7);
    }

    #[test]
    fn a_missing_file_is_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_dotenv(&dir.path().join(".env")), Ok(None));
        let dotenv = WorkingDirDotenv::load(dir.path());
        assert_eq!(dotenv.get("SPIN_VARIABLE_X"), Ok(None));
    }

    #[test]
    fn malformed_files_name_the_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("A=1\nB=2\nthis is not a pair\nC=3\n", 3),
            ("A=1\n\n# c\n1BAD=x\n", 4),
            ("A=1\nB=\"open\nstill open\nC=3\n", 2),
            ("A=1\nB='ok\nmulti'\nC=\"x\"y\"\n", 4),
            ("A=1\nB=${UNCLOSED\n", 2),
        ];
        for (text, line) in cases {
            let path = write(dir.path(), text);
            let err = read_dotenv(&path).expect_err(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert_eq!(err.path, path);
            let shown = err.to_string();
            assert!(
                shown.starts_with(&format!("{}:{line}: ", path.display())),
                "{shown}"
            );
        }
        let path = write(dir.path(), "A=1\nSECRET=\"s3cret\n");
        let err = read_dotenv(&path).expect_err("unterminated");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: unterminated quote: the file ends inside this quoted value",
                path.display()
            )
        );
        let path = write(dir.path(), "A=1\nB=2 3\n");
        let err = read_dotenv(&path).expect_err("two words");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: invalid dotenv syntax (expected `KEY=value`)",
                path.display()
            )
        );
        std::fs::write(&path, b"A=1\nB=\xff\n").expect("write");
        let err = read_dotenv(&path).expect_err("not UTF-8");
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn a_malformed_working_dir_file_fails_every_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "SPIN_VARIABLE_A=1\noops\n");
        let dotenv = WorkingDirDotenv::load(dir.path());
        let err = dotenv.get("SPIN_VARIABLE_A").expect_err("malformed");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.path, dir.path().join(".env"));
    }
}
